"""Fast inference for a trained Reformer: what ``Selector.select``, ``select_many`` and ``evaluate`` run.

The torch training model is rearranged once, at load time, into contiguous
float32 arrays, so that scoring a problem is a handful of small matmuls with
no autograd and no module dispatch:

* **Fused projections**: a Γ-block's ``X W1 + b1`` and ``X W2 + b2`` are one
  ``[d, 2d]`` matmul; a transformer block's q, k, v one ``[d, 3d]`` matmul with
  the attention scale ``1/sqrt(d_head)`` folded into q.
* **Embedding folded into the first block.**  A numeric token is ``v·s + p``
  (standardised value, learnt scale, position; plus ``e`` from the exact-value
  table when the model has one), so the first block's projection ``X W + b``
  of it is ``v·(s W) + (p W + b) + e W``: precomputed, the first matmul becomes
  one multiply-add (and a row lookup) per token.  A categorical token is a row
  of the precomputed ``(table + p) W + b``.
* **Γ-block LayerNorm affine folded forward.**  ``LN(y) = g·ẑ + β`` only feeds
  the next block's ``X W + b`` (or the head), which become
  ``ẑ (diag(g) W) + (β W + b)``; each norm reduces to standardising ``ẑ``.
  (Transformer blocks keep theirs: the residual needs the normalised values.)
* **The Γ-block token-mixing bias c is dropped.**  It adds one value to every
  feature of a token, and the LayerNorm that follows subtracts each token's
  mean, so it never changes the output.
* **The mean over tokens is folded into the head** (``1/L`` in its weights).

Folds are computed in float64 and stored as float32; results agree with the
torch model up to float32 rounding (about 1e-6 on the logits).

One problem runs in numpy, whose per-call overhead on these tiny matrices is
below torch's, with torch only for the activation, softmax and LayerNorm
(vectorised kernels numpy lacks; erf for GELU).  Batches run in torch, in
chunks spread over worker threads, with the token axis first, so the token
mixing ``P·H`` of a whole chunk of problems is one ``[L, L] x [L, B·d]`` matmul;
transformer-block batches run the model's own torch blocks (PyTorch's fused
encoder-layer kernel).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kernelbench.problem import DERIVED_FIELDS, FIELDS, ConvProblem
from reformer.features import DERIVED_TOKENS, EncodedProblems, derived_values
from reformer.model import GammaBlock
from reformer.store import TrainedModel

#: Problems per batched forward pass: large enough for efficient matmuls, small enough to stay in cache.
CHUNK = 64
#: Serialises batched calls, which change torch's (process-wide) intra-op thread count while they run.
_THREADS_LOCK = threading.Lock()

ProblemLike = Mapping[str, Any] | ConvProblem

#: Every field a problem record exposes to the encoder, read in one attribute fetch.
_PROBLEM_FIELDS = (*FIELDS, *DERIVED_FIELDS)
_get_problem_fields = operator.attrgetter(*_PROBLEM_FIELDS)


def as_problem(problem: ProblemLike) -> ConvProblem:
    """The validated record of a problem given as a record or as a mapping of dataset columns.

    Raises:
        InputError: unknown or missing fields, or invalid values (see :meth:`ConvProblem.from_mapping`).
    """
    return problem if isinstance(problem, ConvProblem) else ConvProblem.from_mapping(problem)


def problem_columns(problems: Sequence[ProblemLike]) -> dict[str, np.ndarray]:
    """Problems as the column arrays :meth:`FeatureEncoder.encode` reads (validated; defaults filled in).

    Raises:
        InputError: a problem is invalid.
    """
    rows = [_get_problem_fields(as_problem(p)) for p in problems]
    return {name: np.array(values) for name, values in zip(_PROBLEM_FIELDS, zip(*rows))}


def _f64(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float64).cpu().numpy()


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def _elementwise(function: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray) -> np.ndarray:
    """A torch elementwise op on a numpy array ``[L, d]``; the result is a C-contiguous array.

    A C-contiguous input runs as a transposed view: for contiguous float tensors
    torch takes its oneDNN path, whose fixed cost per call is several µs above the
    native vectorised kernel's on arrays this small (strided inputs, such as the
    halves of a fused projection, take the native kernel anyway).  The output keeps
    the input's layout, so transposing back gives a C-contiguous array without a copy.
    """
    if x.flags.c_contiguous:
        return function(torch.from_numpy(x).T).T.numpy()
    return function(torch.from_numpy(x)).numpy()


def _layer_norm(y: np.ndarray, eps: float, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> np.ndarray:
    """LayerNorm over the last axis of a numpy array ``[L, d]`` (one torch op instead of six numpy ones)."""
    return torch.layer_norm(torch.from_numpy(y), (y.shape[-1],), weight, bias, eps).numpy()


@dataclasses.dataclass(frozen=True, eq=False)
class _Gamma:
    """One Γ-block, pre-arranged (see the module docstring).

    ``weight`` ``[d, cols]`` holds ``[W1 | W2]`` for the paths present (``cols``
    is d or 2d) with the previous norm's scale folded in; ``bias`` ``[cols]``
    likewise.  Both are None for the first block (folded into the embedding).
    """

    weight: np.ndarray | None
    bias: np.ndarray | None
    mix: np.ndarray | None  # P [L, L]; None without the nonlinear path
    direct: bool
    eps: float
    activation: Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True, eq=False)
class _Attention:
    """One post-norm transformer encoder block, pre-arranged; weights are right-multiplied ``[in, out]``.

    ``qkv_weight``/``qkv_bias`` are None for the first block (folded into the embedding).
    """

    qkv_weight: np.ndarray | None
    qkv_bias: np.ndarray | None
    out_weight: np.ndarray
    out_bias: np.ndarray
    ff1_weight: np.ndarray
    ff1_bias: np.ndarray
    ff2_weight: np.ndarray
    ff2_bias: np.ndarray
    norm1: tuple[torch.Tensor, torch.Tensor]
    norm2: tuple[torch.Tensor, torch.Tensor]
    eps: float
    activation: Callable[[torch.Tensor], torch.Tensor]


def _gamma_projection(block: GammaBlock) -> tuple[np.ndarray, np.ndarray]:
    """``[W1 | W2]`` (``[d, cols]``) and ``[b1 | b2]`` of a Γ-block, for the paths it has."""
    parts = ([block.fc] if block.nonlinear else []) + ([block.affine] if block.direct else [])
    return np.concatenate([_f64(p.weight).T for p in parts], axis=1), np.concatenate([_f64(p.bias) for p in parts])


def _qkv_projection(block: nn.TransformerEncoderLayer, heads: int) -> tuple[np.ndarray, np.ndarray]:
    """The q, k, v projection ``[d, 3d]`` and bias ``[3d]``, with ``1/sqrt(d_head)`` folded into q."""
    attention = block.self_attn
    weight, bias = _f64(attention.in_proj_weight).T, _f64(attention.in_proj_bias)
    d = weight.shape[0]
    scale = np.ones(3 * d)
    scale[:d] = 1.0 / math.sqrt(d // heads)
    return weight * scale, bias * scale


class FastReformer:
    """A trained Reformer rearranged for inference; build it with :meth:`from_trained`.

    Scores problems without autograd: :meth:`select_one` (one problem, numpy),
    :meth:`select_many` and :meth:`probabilities` (batched, torch).  The torch
    model is only read while building (except by transformer-block batches, which
    run its blocks): changing it afterwards does not change the scores.
    """

    def __init__(self, trained: TrainedModel) -> None:
        model = trained.model
        config = model.config
        encoder = trained.encoder
        self.kernels = trained.kernels
        self.encoder = encoder
        self.gamma = config.block == "gamma"
        self.dim = config.dim
        self.heads = config.heads
        self.n_tokens = config.n_tokens
        self.n_categorical = len(config.n_categories)

        # -- one problem's encoding: the encoder's own tokens and statistics, read from a record
        self._vocab_index = tuple({v: i + 1 for i, v in enumerate(vocab)} for vocab in encoder.vocabularies)
        self._cat_getters = tuple(operator.attrgetter(name) for name in encoder.categorical)
        self._cat_offsets = np.concatenate([[0], np.cumsum(config.n_categories)[:-1]]).astype(np.int64)
        self._derived = any(name in DERIVED_TOKENS for name in encoder.numeric)
        self._numeric_means = tuple(zip(encoder.numeric, encoder.mean))
        # (token position, name, exact value -> id) for the numeric tokens that have exact-value embeddings
        self._value_index = tuple(
            (j, name, {value: i + 1 for i, value in enumerate(vocabulary)})
            for j, (name, vocabulary) in enumerate(zip(encoder.numeric, encoder.value_vocabularies))
            if vocabulary
        )

        # -- the embedding, projected by the first block (Γ: [W1 | W2]; transformer: [I | W_qkv])
        embed = model.embed
        first = model.blocks[0]
        if self.gamma:
            project, project_bias = _gamma_projection(first)
        else:
            qkv, qkv_bias = _qkv_projection(first, config.heads)
            project = np.concatenate([np.eye(config.dim), qkv], axis=1)
            project_bias = np.concatenate([np.zeros(config.dim), qkv_bias])
        position, table = _f64(embed.position), _f64(embed.table.weight)
        rows = [table[o : o + n] + position[j] for j, (o, n) in enumerate(zip(self._cat_offsets, config.n_categories))]
        cat_table = np.concatenate(rows) if rows else np.zeros((0, config.dim))
        scale = _f64(embed.scale) @ project
        self._cat_table = _f32(cat_table @ project + project_bias)
        self._num_scale = _f32(scale)
        # One problem's numeric tokens arrive as log2(1 + x) - mean; their 1 / std is folded in here.
        self._num_scale_centred = _f32(scale / np.asarray(encoder.std)[:, None])
        # The constant part of a numeric token, p W + b, plus e W of its exact value when the model has
        # exact-value embeddings: one row per (token, value id), so one lookup adds both.
        num_bias = position[self.n_categorical :] @ project + project_bias
        n_values = config.n_values or (1,) * len(encoder.numeric)
        self._value_offsets = np.concatenate([[0], np.cumsum(n_values)[:-1]]).astype(np.int64)
        self._num_rows = np.repeat(num_bias, n_values, axis=0)
        if embed.exact is not None:
            self._num_rows += _f64(embed.exact.weight) @ project
        self._num_rows = _f32(self._num_rows)

        # -- blocks and head
        head_weight, head_bias = _f64(model.head.weight).T, _f64(model.head.bias)
        self._gammas: tuple[_Gamma, ...] = ()
        self._attentions: tuple[_Attention, ...] = ()
        if self.gamma:
            self._gammas = self._arrange_gammas(model.blocks)
            last = model.blocks[-1].norm
            shift = _f64(last.bias)
            head_weight, head_bias = _f64(last.weight)[:, None] * head_weight, shift @ head_weight + head_bias
        else:
            self._attentions = tuple(self._arrange_attention(b, i == 0) for i, b in enumerate(model.blocks))
            self._torch_blocks = model.blocks
        self._head_weight = _f32(head_weight / config.n_tokens)  # sum over tokens @ this == mean @ original
        self._head_bias = _f32(head_bias)
        self._ones = np.ones(config.n_tokens, dtype=np.float32)

    @classmethod
    def from_trained(cls, trained: TrainedModel) -> FastReformer:
        """Pre-arrange a trained model's weights (the torch model is not modified)."""
        with torch.no_grad():
            return cls(trained)

    @staticmethod
    def _arrange_gammas(blocks: nn.Sequential) -> tuple[_Gamma, ...]:
        out = []
        for i, block in enumerate(blocks):
            weight = bias = None
            if i:
                w, b = _gamma_projection(block)
                previous = blocks[i - 1].norm
                weight, bias = _f32(_f64(previous.weight)[:, None] * w), _f32(_f64(previous.bias) @ w + b)
            out.append(
                _Gamma(
                    weight=weight,
                    bias=bias,
                    mix=_f32(_f64(block.mix.weight)) if block.nonlinear else None,
                    direct=block.direct,
                    eps=block.norm.eps,
                    activation=block.activation.forward if block.nonlinear else F.relu,
                )
            )
        return tuple(out)

    def _arrange_attention(self, block: nn.TransformerEncoderLayer, first: bool) -> _Attention:
        qkv, qkv_bias = (None, None) if first else _qkv_projection(block, self.heads)

        def linear(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
            return _f32(_f64(layer.weight).T), _f32(_f64(layer.bias))

        out_weight, out_bias = linear(block.self_attn.out_proj)
        ff1_weight, ff1_bias = linear(block.linear1)
        ff2_weight, ff2_bias = linear(block.linear2)
        return _Attention(
            qkv_weight=None if qkv is None else _f32(qkv),
            qkv_bias=None if qkv_bias is None else _f32(qkv_bias),
            out_weight=out_weight,
            out_bias=out_bias,
            ff1_weight=ff1_weight,
            ff1_bias=ff1_bias,
            ff2_weight=ff2_weight,
            ff2_bias=ff2_bias,
            norm1=(block.norm1.weight.detach().clone(), block.norm1.bias.detach().clone()),
            norm2=(block.norm2.weight.detach().clone(), block.norm2.bias.detach().clone()),
            eps=block.norm1.eps,
            activation=block.activation,
        )

    # ---------------------------------------------------------------- one problem (numpy)
    def encode_one(self, problem: ProblemLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One problem's tokens: categorical-table rows (``int64 [C]``), centred numeric values
        (``float32 [N]``) and exact-value table rows (``int64 [N]``).

        The tokens and statistics are the encoder's (:meth:`FeatureEncoder.encode`):
        an unseen categorical value takes id 0, as does a numeric value without an
        exact-value embedding; a numeric value is ``log2(1 + x) - mean``, the
        standardised value times ``std`` (the division is folded into the weights).

        Raises:
            InputError: the problem is invalid.
        """
        record = as_problem(problem)
        ids = [index.get(str(get(record)), 0) for index, get in zip(self._vocab_index, self._cat_getters)]
        fields = dict(zip(_PROBLEM_FIELDS, _get_problem_fields(record)))
        if self._derived:
            fields.update(derived_values(fields))
        centred = [math.log2(1.0 + fields[name]) - mean for name, mean in self._numeric_means]
        value_rows = self._value_offsets.copy()
        for j, name, index in self._value_index:
            value_rows[j] += index.get(float(fields[name]), 0)
        # int64 even when a dataset has no categorical token (an empty list would become float64).
        rows = np.add(np.asarray(ids, dtype=np.int64), self._cat_offsets)
        return rows, np.array(centred, dtype=np.float32), value_rows

    def logits_one(self, problem: ProblemLike) -> np.ndarray:
        """Unmasked logits ``float32 [n_kernels]`` of one problem.

        Raises:
            InputError: the problem is invalid.
        """
        rows, centred, value_rows = self.encode_one(problem)
        c = self.n_categorical
        first = np.empty((self.n_tokens, self._num_rows.shape[1]), dtype=np.float32)
        np.take(self._cat_table, rows, axis=0, out=first[:c])
        np.multiply(centred[:, None], self._num_scale_centred, out=first[c:])
        first[c:] += self._num_rows[value_rows]
        x = self._gamma_one(first) if self.gamma else self._attention_one(first)
        return (self._ones @ x) @ self._head_weight + self._head_bias

    def _gamma_one(self, zw: np.ndarray) -> np.ndarray:
        """Γ-blocks on one problem; ``zw`` is the first block's ``[X W1 + b1 | X W2 + b2]``."""
        d = self.dim
        x = zw
        for block, after in zip(self._gammas, (*self._gammas[1:], None)):
            if block.mix is not None:
                y = block.mix @ _elementwise(block.activation, zw[:, :d])
                if block.direct:
                    y += zw[:, d:]
            else:
                y = zw
            x = _layer_norm(y, block.eps)
            if after is not None:
                zw = x @ after.weight
                zw += after.bias
        return x

    def _attention_one(self, first: np.ndarray) -> np.ndarray:
        """Transformer blocks on one problem; ``first`` is ``[X | X W_qkv + b_qkv]`` of the first block."""
        d, heads, n = self.dim, self.heads, self.n_tokens
        x, qkv = first[:, :d], first[:, d:]
        for block in self._attentions:
            if block.qkv_weight is not None:
                qkv = x @ block.qkv_weight
                qkv += block.qkv_bias
            q, k, v = qkv.reshape(n, 3, heads, d // heads).transpose(1, 2, 0, 3)  # each [heads, L, d_head]
            attention = torch.softmax(torch.from_numpy(q @ k.transpose(0, 2, 1)), dim=-1).numpy()
            context = (attention @ v).transpose(1, 0, 2).reshape(n, d)
            y = context @ block.out_weight
            y += block.out_bias
            y += x
            x = _layer_norm(y, block.eps, *block.norm1)
            hidden = x @ block.ff1_weight
            hidden += block.ff1_bias
            y = _elementwise(block.activation, hidden) @ block.ff2_weight
            y += block.ff2_bias
            y += x
            x = _layer_norm(y, block.eps, *block.norm2)
        return x

    def select_one(self, problem: ProblemLike, mask: np.ndarray | None = None, top: int = 1) -> list[tuple[str, float]]:
        """The ``top`` most probable applicable kernels of one problem, best first: ``[(kernel, probability), ...]``.

        ``mask`` (bool ``[n_kernels]``, None = all) marks the applicable
        kernels; probabilities are the softmax over them.  Fewer than ``top``
        entries are returned when fewer kernels apply.

        Raises:
            InputError: the problem is invalid.
            ValueError: ``mask`` marks no kernel, or ``top`` < 1.
        """
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        logits = self.logits_one(problem)
        if mask is not None:
            if not mask.any():
                raise ValueError("the applicability mask marks no kernel")
            logits = np.where(mask, logits, -np.inf)
        if top == 1:
            best = int(np.argmax(logits))
            return [(self.kernels[best], float(1.0 / np.exp(logits - logits[best]).sum()))]
        weights = np.exp(logits - logits.max())
        probabilities = weights / weights.sum()
        ranked = np.argsort(-probabilities, kind="stable")[:top]
        return [(self.kernels[j], float(probabilities[j])) for j in ranked if mask is None or mask[j]]

    # ---------------------------------------------------------------- batches (torch)
    def logits(self, encoded: EncodedProblems) -> np.ndarray:
        """Unmasked logits ``float32 [n, n_kernels]`` of encoded problems (see :meth:`FeatureEncoder.encode`).

        Chunks of :data:`CHUNK` problems run on ``torch.get_num_threads()`` worker
        threads, each with one intra-op thread: the ops on one chunk are too small
        for torch's own threading to pay for its synchronisation (on a busy machine
        it made batches several times slower than one thread).  While a call runs,
        torch's intra-op thread count is therefore 1; it is restored afterwards.
        """
        n = len(encoded)
        out = np.empty((n, len(self.kernels)), dtype=np.float32)
        categorical = torch.from_numpy(encoded.categorical + self._cat_offsets)
        numeric = torch.from_numpy(np.ascontiguousarray(encoded.numeric, dtype=np.float32))
        value_rows = torch.from_numpy(encoded.value_ids + self._value_offsets)

        def chunk(start: int) -> None:
            rows = slice(start, start + CHUNK)
            with torch.inference_mode():
                out[rows] = self._logits_chunk(categorical[rows], numeric[rows], value_rows[rows]).numpy()

        starts = range(0, n, CHUNK)
        with _THREADS_LOCK:
            threads = torch.get_num_threads()
            if threads == 1 or len(starts) < 2:
                for start in starts:
                    chunk(start)
                return out
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(min(threads, len(starts))) as pool:
                    list(pool.map(chunk, starts))
            finally:
                torch.set_num_threads(threads)
        return out

    def _logits_chunk(self, categorical: torch.Tensor, numeric: torch.Tensor, value_rows: torch.Tensor) -> torch.Tensor:
        """Logits of one chunk; activations are laid out ``[L, B, features]`` (token axis first)."""
        # Transformer blocks run the model's own torch blocks, which need only the embedding X itself.
        columns = slice(None) if self.gamma else slice(0, self.dim)
        parts = []
        if self.n_categorical:
            parts.append(F.embedding(categorical.T, torch.from_numpy(self._cat_table[:, columns])))
        if numeric.shape[1]:
            scale = torch.from_numpy(self._num_scale[:, columns])
            constant = F.embedding(value_rows.T, torch.from_numpy(self._num_rows[:, columns]))
            parts.append(torch.addcmul(constant, numeric.T[:, :, None], scale[:, None]))
        first = torch.cat(parts) if len(parts) > 1 else parts[0]
        if self.gamma:
            x = self._gamma_chunk(first).sum(0)
        else:
            x = self._torch_blocks(first.transpose(0, 1).contiguous()).sum(1)
        return torch.addmm(torch.from_numpy(self._head_bias), x, torch.from_numpy(self._head_weight))

    def _gamma_chunk(self, zw: torch.Tensor) -> torch.Tensor:
        n_tokens, batch, d = zw.shape[0], zw.shape[1], self.dim
        x = zw
        for block, after in zip(self._gammas, (*self._gammas[1:], None)):
            if block.mix is not None:
                hidden = block.activation(zw[..., :d]).reshape(n_tokens, batch * d)
                y = torch.mm(torch.from_numpy(block.mix), hidden).view(n_tokens, batch, d)
                if block.direct:
                    y += zw[..., d:]
            else:
                y = zw
            x = torch.layer_norm(y, (d,), None, None, block.eps)
            if after is not None:
                weight, bias = torch.from_numpy(after.weight), torch.from_numpy(after.bias)
                zw = torch.addmm(bias, x.view(n_tokens * batch, d), weight).view(n_tokens, batch, -1)
        return x

    def probabilities(self, encoded: EncodedProblems, mask: np.ndarray | None = None) -> np.ndarray:
        """Softmax over the applicable kernels, ``float32 [n, n_kernels]``.

        ``mask`` is bool ``[n, n_kernels]`` (None: all apply); masked kernels get
        probability 0; a row with no applicable kernel is all NaN.
        """
        logits = torch.from_numpy(self.logits(encoded))
        if mask is not None:
            logits.masked_fill_(~torch.from_numpy(np.asarray(mask, dtype=bool)), float("-inf"))
        return torch.softmax(logits, dim=1).numpy()

    def select_many(
        self, problems: Sequence[ProblemLike], masks: np.ndarray | None = None, top: int = 1
    ) -> list[list[tuple[str, float]]]:
        """:meth:`select_one` for many problems in batched passes; ``masks`` is bool ``[n, n_kernels]`` or None.

        Raises:
            InputError: a problem is invalid.
            ValueError: ``top`` < 1.
        """
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        if not problems:
            return []
        probabilities = self.probabilities(self.encoder.encode(problem_columns(problems)), masks)
        ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
        return [
            [(self.kernels[j], float(probabilities[i, j])) for j in row if masks is None or masks[i, j]]
            for i, row in enumerate(ranked)
        ]
