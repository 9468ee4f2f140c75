"""The Reformer network: token embedding, a stack of Γ-blocks (or transformer blocks), masked head.

Shapes: ``B`` problems, ``L`` tokens, ``d`` model width, ``K`` kernels.
Activations are laid out token-first, ``[L, B, d]``: the Γ-block's token mixing
``P · H`` of a whole batch is then one ``[L, L] x [L, B·d]`` matmul, and so are
both halves of its gradient (batch-first, the broadcast matmul's backward copies
and reduces per problem; token-first trains about 1.2x faster at d = 64).
Transformer blocks run batch-first (PyTorch's encoder layer and its fused path).
For tokens X in R^{L x d} one Γ-block computes (``docs/reformer.md``)::

    Y = LayerNorm( P · φ(X W1 + b1) + c  +  X W2 + b2 )

with P in R^{L x L} mixing tokens and c in R^L (broadcast over features).
``paths="affine"`` keeps only ``X W2 + b2``; ``paths="nonlinear"`` only the
``P · φ(·) + c`` path.  The head averages the tokens, maps them to one logit
per kernel, and sets the logits of non-applicable kernels to -inf.

With ``membership_head`` the head has two logits per kernel, ``z`` (which is best
among the measured kernels) and ``u`` (is the kernel measured for this problem at
all), and the model's score is ``z + log σ(u)``: the log of P(k measured) ·
P(k best | measured) up to a constant, one scoring rule for both protocols.
The closed cross-entropy is taken on the score itself (z absorbs log σ(u) among
the measured kernels); the membership losses do not reach z
(:func:`soft_cross_entropy`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from kernelbench.errors import InputError
from reformer.config import BLOCKS, PATHS

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture of one model (saved in ``config.json``).

    Raises (on construction):
        InputError: an option is out of range or unknown.
    """

    n_categories: tuple[int, ...]
    n_numeric: int
    n_kernels: int
    n_values: tuple[int, ...] = ()
    dim: int = 64
    blocks: int = 3
    block: str = "gamma"
    paths: str = "both"
    activation: str = "gelu"
    heads: int = 4
    membership_head: bool = False

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise InputError(f"--block {self.block!r} is unknown; use one of {', '.join(BLOCKS)}")
        if self.paths not in PATHS:
            raise InputError(f"--paths {self.paths!r} is unknown; use one of {', '.join(PATHS)}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"--activation {self.activation!r} is unknown; use one of {', '.join(ACTIVATIONS)}")
        if self.blocks < 1 or self.dim < 1:
            raise InputError(f"--blocks and --dim must be >= 1, got {self.blocks} and {self.dim}")
        if self.block == "transformer" and self.dim % self.heads:
            raise InputError(f"--dim {self.dim} must be a multiple of the {self.heads} attention heads")
        if self.n_values and len(self.n_values) != self.n_numeric:
            raise ValueError("n_values needs one table size per numeric token")
        if self.n_kernels < 1 or self.n_tokens < 1:
            raise InputError("a model needs at least one token and one kernel")

    @property
    def n_tokens(self) -> int:
        return len(self.n_categories) + self.n_numeric

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["n_categories"] = list(self.n_categories)
        data["n_values"] = list(self.n_values)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelConfig:
        return cls(**{**data, "n_categories": tuple(data["n_categories"]), "n_values": tuple(data["n_values"])})


class TokenEmbedding(nn.Module):
    """Position embedding of each token + its value embedding.

    Categorical tokens: a learnt table per field (one shared table with
    per-field offsets).  Numeric tokens: ``v * a_f`` for the standardised
    value ``v``; the affine map's bias is the position embedding itself;
    with ``n_values``, plus a learnt embedding of the exact value (zero for
    values without one, and zero-initialised).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.dim
        self.position = nn.Parameter(torch.randn(config.n_tokens, d))
        self.table = nn.Embedding(max(1, sum(config.n_categories)), d)
        offsets = torch.tensor([0, *config.n_categories[:-1]], dtype=torch.int64).cumsum(0)
        self.register_buffer("offsets", offsets[: len(config.n_categories)], persistent=False)
        self.scale = nn.Parameter(torch.randn(config.n_numeric, d))
        self.exact = None
        if config.n_values:
            self.exact = nn.Embedding(sum(config.n_values), d)
            nn.init.zeros_(self.exact.weight)
            value_offsets = torch.tensor([0, *config.n_values[:-1]], dtype=torch.int64).cumsum(0)
            self.register_buffer("value_offsets", value_offsets, persistent=False)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor, value_ids: torch.Tensor) -> torch.Tensor:
        """``categorical`` int64 [B, C], ``numeric`` float32 [B, N], ``value_ids`` int64 [B, N] -> tokens [L, B, d]."""
        values = numeric.T.unsqueeze(-1) * self.scale.unsqueeze(1)
        if self.exact is not None:
            values = values + self.exact(value_ids.T + self.value_offsets.unsqueeze(1))
        if categorical.shape[1]:
            values = torch.cat([self.table(categorical.T + self.offsets.unsqueeze(1)), values], dim=0)
        return values + self.position.unsqueeze(1)


class GammaBlock(nn.Module):
    """``Y = LayerNorm(P · φ(X W1 + b1) + c + X W2 + b2)``: three matmuls, paths selectable.

    Input and output are token-first, ``[L, B, d]``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, n = config.dim, config.n_tokens
        self.nonlinear = config.paths in ("both", "nonlinear")
        self.direct = config.paths in ("both", "affine")
        if self.nonlinear:
            self.fc = nn.Linear(d, d)  # W1, b1
            self.activation = ACTIVATIONS[config.activation]()
            self.mix = nn.Linear(n, n)  # P (weight), c (bias), applied across tokens
        if self.direct:
            self.affine = nn.Linear(d, d)  # W2, b2
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (Fusing W1 and W2 into one [d, 2d] matmul was measured slower in training: the split halves are
        # strided views that the token-mixing matmul and the LayerNorm then copy.)
        y = self.affine(x) if self.direct else None
        if self.nonlinear:
            n_tokens, batch, d = x.shape
            hidden = self.activation(self.fc(x)).view(n_tokens, batch * d)
            mixed = torch.addmm(self.mix.bias.unsqueeze(-1), self.mix.weight, hidden).view(n_tokens, batch, d)
            y = mixed if y is None else mixed + y
        return self.norm(y)


def transformer_block(config: ModelConfig) -> nn.Module:
    """A standard post-norm encoder block: self-attention + feed-forward of width ``dim``, no dropout."""
    activation = "gelu" if config.activation == "gelu" else "relu"
    return nn.TransformerEncoderLayer(
        d_model=config.dim,
        nhead=config.heads,
        dim_feedforward=config.dim,
        dropout=0.0,
        activation=activation,
        batch_first=True,
    )


class Reformer(nn.Module):
    """Tokens -> blocks -> mean over tokens -> one logit per kernel, masked by applicability."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = TokenEmbedding(config)
        make = GammaBlock if config.block == "gamma" else transformer_block
        self.blocks = nn.Sequential(*[make(config) for _ in range(config.blocks)])
        self.head = nn.Linear(config.dim, config.n_kernels)
        # Created after the ranking head, and only when asked for, so that models without it initialise
        # exactly as before (same random draws).
        self.membership = nn.Linear(config.dim, config.n_kernels) if config.membership_head else None

    def scores_and_membership(
        self, categorical: torch.Tensor, numeric: torch.Tensor, value_ids: torch.Tensor, *, trunk_gradient: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unmasked scores [B, K] (``z + log σ(u)`` with the membership head, else the head's logits) and the
        membership logits ``u`` [B, K] (None without the membership head).  ``trunk_gradient=False`` stops the
        gradient of u at the pooled tokens (training only: the head then reads the ranking features as they are)."""
        tokens = self.embed(categorical, numeric, value_ids)
        if self.config.block == "gamma":
            pooled = self.blocks(tokens).mean(dim=0)
        else:
            pooled = self.blocks(tokens.transpose(0, 1)).mean(dim=1)
        logits = self.head(pooled)
        if self.membership is None:
            return logits, None
        membership = self.membership(pooled if trunk_gradient else pooled.detach())
        return membership_scores(logits, membership), membership

    def forward(
        self,
        categorical: torch.Tensor,
        numeric: torch.Tensor,
        value_ids: torch.Tensor,
        applicable: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores ("logits") [B, K] for encoded problems (see :class:`reformer.features.EncodedProblems`);
        where ``applicable`` (bool [B, K]) is False the score is -inf."""
        logits = self.scores_and_membership(categorical, numeric, value_ids)[0]
        if applicable is not None:
            logits = logits.masked_fill(~applicable, float("-inf"))
        return logits


def membership_scores(logits: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """The membership head's ranking score ``z + log σ(u)`` (elementwise; the one definition, which the fast
    inference paths reproduce)."""
    return logits + F.logsigmoid(membership)


def soft_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    applicable: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    candidates: torch.Tensor | None = None,
    membership_weight: float = 1.0,
    membership_term: str = "set",
    membership: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over problems of the training loss, each problem's term multiplied by ``weight`` [B] when given.

    Without ``candidates``: ``-Σ_k q_k log softmax(logits over the applicable kernels)_k`` (the closed
    protocol: non-applicable terms are 0, not NaN).  With ``candidates`` (a superset of ``applicable``, bool
    [B, K]), ``membership_weight`` λ times ``-log P(the measured set)`` under the softmax over the candidates is
    added: ``logsumexp(candidates) - logsumexp(measured)``.  At λ = 1 the sum is exactly the cross-entropy of
    the softmax over the candidates with the label mass on the measured kernels; smaller λ keeps more of the
    model's capacity on the order among the measured kernels.  ``membership_term="pick"`` replaces that term
    by ``softplus(logsumexp(unmeasured candidates) - max(measured))``: the measured kernels' best logit
    against the unmeasured ones, without the ``log(number measured)`` head start the set term gives a
    problem with several measured kernels (0 when every candidate was measured).

    With ``membership`` (the membership head's logits ``u`` [B, K]; ``logits`` are then its scores
    ``z + log σ(u)``), the candidate term is instead λ times the sum of two terms that train u (and the
    shared layers) but not z: the binary cross-entropy of ``u`` over the problem's candidates, summed,
    ``-Σ_{k ∈ candidates} [m_k log σ(u_k) + (1 - m_k) log σ(-u_k)]`` with ``m_k`` = k was measured
    (``applicable``); and ``-log P(measured set)`` under the softmax over the candidates of the scores, with
    z held fixed (``logsumexp(candidates) - logsumexp(measured)`` as above).
    """
    masked = logits.masked_fill(~applicable, float("-inf"))
    log_p = torch.log_softmax(masked, dim=1)
    per_problem = -(target * log_p.masked_fill(~applicable, 0.0)).sum(dim=1)
    if membership is not None:
        if candidates is None:
            raise ValueError("the membership head's loss needs the candidates")
        bce = F.binary_cross_entropy_with_logits(membership, applicable.to(membership.dtype), reduction="none")
        # -log P(measured set) under the softmax over the candidates of z + log σ(u), with z held fixed: u
        # learns to sink exactly the unmeasured candidates whose z would outrank the measured ones (the
        # open protocol's misses), and z stays the closed protocol's.
        log_sigmoid = F.logsigmoid(membership)
        fixed_z = (logits - log_sigmoid).detach() + log_sigmoid
        set_term = (torch.logsumexp(fixed_z.masked_fill(~candidates, float("-inf")), dim=1)
                    - torch.logsumexp(fixed_z.masked_fill(~applicable, float("-inf")), dim=1))
        per_problem = per_problem + membership_weight * (bce.masked_fill(~candidates, 0.0).sum(dim=1) + set_term)
    elif candidates is not None and membership_term == "pick":
        # A finite fill, not -inf: a problem without unmeasured candidates would otherwise get a NaN gradient.
        unmeasured = torch.logsumexp(logits.masked_fill(~candidates | applicable, -1e4), dim=1)
        per_problem = per_problem + membership_weight * F.softplus(unmeasured - masked.max(dim=1).values)
    elif candidates is not None:
        lse_candidates = torch.logsumexp(logits.masked_fill(~candidates, float("-inf")), dim=1)
        per_problem = per_problem + membership_weight * (lse_candidates - torch.logsumexp(masked, dim=1))
    return (per_problem if weight is None else per_problem * weight).mean()
