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
* **A membership head is the second half of one ``[d, 2K]`` head**; the score
  ``z + log σ(u)`` (:func:`reformer.model.membership_scores`) is taken after it.

Folds are computed in float64 and stored as float32; results agree with the
torch model up to float32 rounding (about 1e-6 on the logits).

Γ-block models run in :mod:`reformer.compiled`: one compiled call per problem
(or per batch, problems spread over threads) from table lookup to logits, and
one for the masked pick, because on matrices this small the per-call overhead
of a dozen numpy/torch ops per block costs more than the arithmetic.  Encoding
one problem is plain Python on the record's fields.  Transformer-block models
(the comparison in the ablations) run one problem in numpy, with torch for
softmax, LayerNorm and the activation, and batches in torch chunks spread over
worker threads through the model's own blocks (PyTorch's fused encoder-layer
kernel).
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

from kernelbench.devices import DeviceDescriptor
from kernelbench.problem import DERIVED_FIELDS, FIELDS, ConvProblem
from reformer.device_features import DEVICE_PAIR_TOKENS, pair_values, spec_values
from reformer.features import DERIVED_TOKENS, EncodedProblems, derived_values
from reformer.compiled import GammaWeights, masked_top1
from reformer.model import GammaBlock, membership_scores
from reformer.store import TrainedModel
from reformer.threads import torch_threads

#: Problems per batched forward pass: large enough for efficient matmuls, small enough to stay in cache.
CHUNK = 64
#: Serialises batched calls, which change torch's (process-wide) intra-op thread count while they run.
_THREADS_LOCK = threading.Lock()

ProblemLike = Mapping[str, Any] | ConvProblem

#: Every field a problem record exposes to the encoder, read in one attribute fetch.
_PROBLEM_FIELDS = (*FIELDS, *DERIVED_FIELDS)
_get_problem_fields = operator.attrgetter(*_PROBLEM_FIELDS)
_get_derived_fields = operator.attrgetter(*DERIVED_FIELDS)


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


def _membership_scores(raw: torch.Tensor) -> torch.Tensor:
    """The scores of a membership-head model from its head's ``[..., 2K]`` output ``[z | u]``."""
    z, u = raw.chunk(2, dim=-1)
    return membership_scores(z, u)


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

    A model with device tokens needs each problem's device label (``device=``, a
    ``device`` column); ``descriptors`` describe devices it was not trained on
    beyond the package's table (``--device-spec``).
    """

    def __init__(self, trained: TrainedModel, descriptors: Mapping[str, DeviceDescriptor] | None = None) -> None:
        model = trained.model
        config = model.config
        encoder = trained.encoder
        self.kernels = trained.kernels
        self.encoder = encoder
        self.descriptors = dict(descriptors or {})
        # One problem on a device: the device's own tokens are looked up once per label (the descriptor's
        # categorical strings and spec figures); the problem x device tokens are computed per problem.
        self._reads_device = bool(encoder.device_tokens)
        self._pairs = any(name in DEVICE_PAIR_TOKENS for name in encoder.numeric)
        self._device_fields: dict[str, dict[str, Any]] = {}
        self.gamma = config.block == "gamma"
        self.dim = config.dim
        self.heads = config.heads
        self.n_tokens = config.n_tokens
        self.n_categorical = len(config.n_categories)

        # -- one problem's encoding: the encoder's own tokens and statistics, read from a record
        self._cat_offsets = np.concatenate([[0], np.cumsum(config.n_categories)[:-1]]).astype(np.int64)
        # (table offset, field, value -> id) per categorical token
        self._cat_plan = tuple(
            (int(offset), name, {v: i + 1 for i, v in enumerate(vocab)})
            for offset, name, vocab in zip(self._cat_offsets, encoder.categorical, encoder.vocabularies)
        )
        self._derived = self._pairs or any(name in DERIVED_TOKENS for name in encoder.numeric)
        self._numeric_means = tuple(zip(encoder.numeric, encoder.mean))

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
        # (row offset, name, exact value -> id or None) per numeric token; Python ints and the
        # vocabularies' floats hash alike, so an integer field value finds its float key.
        self._value_plan = tuple(
            (int(offset), name, {value: i + 1 for i, value in enumerate(vocabulary)} if vocabulary else None)
            for offset, name, vocabulary in zip(self._value_offsets, encoder.numeric, encoder.value_vocabularies)
        )
        self._num_rows = np.repeat(num_bias, n_values, axis=0)
        if embed.exact is not None:
            self._num_rows += _f64(embed.exact.weight) @ project
        self._num_rows = _f32(self._num_rows)

        # -- blocks and head (with the membership head: its u logits are the second half of one [d, 2K] head)
        head_weight, head_bias = _f64(model.head.weight).T, _f64(model.head.bias)
        self.membership = model.membership is not None
        if self.membership:
            head_weight = np.concatenate([head_weight, _f64(model.membership.weight).T], axis=1)
            head_bias = np.concatenate([head_bias, _f64(model.membership.bias)])
        self._attentions: tuple[_Attention, ...] = ()
        self._kernel: GammaWeights | None = None
        if self.gamma:
            last = model.blocks[-1].norm
            shift = _f64(last.bias)
            head_weight, head_bias = _f64(last.weight)[:, None] * head_weight, shift @ head_weight + head_bias
        else:
            self._attentions = tuple(self._arrange_attention(b, i == 0) for i, b in enumerate(model.blocks))
            self._torch_blocks = model.blocks
        self._head_weight = _f32(head_weight / config.n_tokens)  # sum over tokens @ this == mean @ original
        self._head_bias = _f32(head_bias)
        self._ones = np.ones(config.n_tokens, dtype=np.float32)
        self._all_kernels = np.ones(len(self.kernels), dtype=bool)
        if self.gamma:
            self._kernel = self._arrange_gammas(model.blocks, config.activation)

    @classmethod
    def from_trained(cls, trained: TrainedModel, descriptors: Mapping[str, DeviceDescriptor] | None = None) -> FastReformer:
        """Pre-arrange a trained model's weights (the torch model is not modified)."""
        with torch.no_grad():
            return cls(trained, descriptors)

    def encode(self, columns: Mapping[str, Any], *,
               descriptors: Mapping[str, DeviceDescriptor] | None = None) -> EncodedProblems:
        """Problems given as columns, encoded (:meth:`FeatureEncoder.encode`) with this model's extra descriptors
        (they win over ``descriptors``, more devices by label).

        Raises:
            InputError: see :meth:`FeatureEncoder.encode`.
        """
        given = {**descriptors, **self.descriptors} if descriptors else self.descriptors
        return self.encoder.encode(columns, descriptors=given)

    def device_fields(self, device: str | None) -> dict[str, Any]:
        """The device's own token values (:func:`reformer.device_features.spec_values`), cached by label.

        Raises:
            InputError: the model reads the device and ``device`` is None or has no descriptor.
        """
        found = self._device_fields.get(device) if device is not None else None
        if found is None:
            if device is None:
                raise self.encoder.missing_device()
            found = spec_values(self.encoder.descriptor(device, self.descriptors))
            self._device_fields[device] = found
        return found

    def _arrange_gammas(self, blocks: nn.Sequential, activation: str) -> GammaWeights:
        """The compiled kernel's weights: per block P, and for blocks 2.. ``[W1 | W2]`` with the previous norm folded in."""
        first: GammaBlock = blocks[0]
        cols = self._num_rows.shape[1]
        weights, biases = [], []
        for previous, block in zip(blocks[:-1], blocks[1:]):
            w, b = _gamma_projection(block)
            weights.append(_f64(previous.norm.weight)[:, None] * w)
            biases.append(_f64(previous.norm.bias) @ w + b)
        n = self.n_tokens
        mix = [_f64(block.mix.weight) if first.nonlinear else np.zeros((n, n)) for block in blocks]
        return GammaWeights(
            cat_table=self._cat_table,
            num_scale=self._num_scale,
            num_scale_centred=self._num_scale_centred,
            num_rows=self._num_rows,
            mix=_f32(np.stack(mix)),
            weight=_f32(np.stack(weights) if weights else np.zeros((0, self.dim, cols))),
            bias=_f32(np.stack(biases) if biases else np.zeros((0, cols))),
            head_weight=self._head_weight,
            head_bias=self._head_bias,
            nonlinear=first.nonlinear,
            direct=first.direct,
            activation=activation,
            eps=first.norm.eps,
            membership=self.membership,
        )

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
    def encode_one(self, problem: ProblemLike, device: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One problem's tokens: categorical-table rows (``int64 [C]``), centred numeric values
        (``float32 [N]``) and exact-value table rows (``int64 [N]``).

        The tokens and statistics are the encoder's (:meth:`FeatureEncoder.encode`):
        an unseen categorical value takes id 0, as does a numeric value without an
        exact-value embedding; a numeric value is ``log2(1 + x) - mean``, the
        standardised value times ``std`` (the division is folded into the weights).
        ``device`` is the label of the device the problem runs on (read only by a model with device tokens).

        Raises:
            InputError: the problem is invalid, or the model reads the device and ``device`` is None or
                has no descriptor.
        """
        record = as_problem(problem)
        # A ConvProblem is a plain dataclass: its instance dict holds every field, read without a call per field.
        fields = vars(record) | dict(zip(DERIVED_FIELDS, _get_derived_fields(record)))
        if self._derived:
            fields.update(derived_values(fields))
        if self._reads_device:
            fields.update(self.device_fields(device))
            if self._pairs:
                fields.update(pair_values(fields, fields))
        rows = [offset + index.get(str(fields[name]), 0) for offset, name, index in self._cat_plan]
        centred = [math.log2(1.0 + fields[name]) - mean for name, mean in self._numeric_means]
        value_rows = [offset if index is None else offset + index.get(fields[name], 0)
                      for offset, name, index in self._value_plan]
        # int64 even when a dataset has no categorical token (an empty list would become float64).
        return np.array(rows, dtype=np.int64), np.array(centred, dtype=np.float32), np.array(value_rows, dtype=np.int64)

    def logits_one(self, problem: ProblemLike, device: str | None = None) -> np.ndarray:
        """Unmasked logits ``float32 [n_kernels]`` of one problem (on ``device``, see :meth:`encode_one`).

        Raises:
            InputError: the problem is invalid, or its device is needed and missing or undescribed.
        """
        rows, centred, value_rows = self.encode_one(problem, device)
        if self._kernel is not None:
            return self._kernel.logits_one(rows, centred, value_rows)
        c = self.n_categorical
        first = np.empty((self.n_tokens, self._num_rows.shape[1]), dtype=np.float32)
        np.take(self._cat_table, rows, axis=0, out=first[:c])
        np.multiply(centred[:, None], self._num_scale_centred, out=first[c:])
        first[c:] += self._num_rows[value_rows]
        x = self._attention_one(first)
        raw = (self._ones @ x) @ self._head_weight + self._head_bias
        if not self.membership:
            return raw
        return _membership_scores(torch.from_numpy(raw)).numpy()

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

    def select_one(self, problem: ProblemLike, mask: np.ndarray | None = None, top: int = 1, *,
                   device: str | None = None) -> list[tuple[str, float]]:
        """The ``top`` most probable applicable kernels of one problem, best first: ``[(kernel, probability), ...]``.

        ``mask`` (bool ``[n_kernels]``, None = all) marks the applicable
        kernels; probabilities are the softmax over them.  Fewer than ``top``
        entries are returned when fewer kernels apply.  ``device``: see :meth:`encode_one`.

        Raises:
            InputError: the problem is invalid, or its device is needed and missing or undescribed.
            ValueError: ``mask`` marks no kernel, or ``top`` < 1.
        """
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        logits = self.logits_one(problem, device)
        if top == 1:
            best, probability = masked_top1(logits, self._all_kernels if mask is None else mask)
            if best < 0:
                raise ValueError("the applicability mask marks no kernel")
            return [(self.kernels[best], probability)]
        if mask is not None:
            if not mask.any():
                raise ValueError("the applicability mask marks no kernel")
            logits = np.where(mask, logits, -np.inf)
        weights = np.exp(logits - logits.max())
        probabilities = weights / weights.sum()
        ranked = np.argsort(-probabilities, kind="stable")[:top]
        return [(self.kernels[j], float(probabilities[j])) for j in ranked if mask is None or mask[j]]

    # ---------------------------------------------------------------- batches (torch)
    def logits(self, encoded: EncodedProblems) -> np.ndarray:
        """Unmasked logits ``float32 [n, n_kernels]`` of encoded problems (see :meth:`FeatureEncoder.encode`).

        Uses ``torch.get_num_threads()`` threads.  Γ-block models run the compiled
        kernel, problems spread over numba threads.  Transformer-block models run
        chunks of :data:`CHUNK` problems on worker threads, each with one intra-op
        thread: the ops on one chunk are too small for torch's own threading to pay
        for its synchronisation (on a busy machine it made batches several times
        slower than one thread); while a call runs, torch's intra-op thread count is
        therefore 1, restored afterwards.
        """
        n = len(encoded)
        if self._kernel is not None:
            with _THREADS_LOCK:
                return self._kernel.logits_many(
                    np.ascontiguousarray(encoded.categorical + self._cat_offsets, dtype=np.int64),
                    np.ascontiguousarray(encoded.numeric, dtype=np.float32),
                    np.ascontiguousarray(encoded.value_ids + self._value_offsets, dtype=np.int64),
                    threads=torch.get_num_threads(),
                )
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
            with torch_threads(1), ThreadPoolExecutor(min(threads, len(starts))) as pool:
                list(pool.map(chunk, starts))
        return out

    def _logits_chunk(self, categorical: torch.Tensor, numeric: torch.Tensor, value_rows: torch.Tensor) -> torch.Tensor:
        """Logits of one chunk of a transformer-block model (which runs its own torch blocks, batch first)."""
        # The blocks need only the embedding X itself, the first d columns of the folded tables.
        columns = slice(0, self.dim)
        parts = []
        if self.n_categorical:
            parts.append(F.embedding(categorical.T, torch.from_numpy(self._cat_table[:, columns])))
        if numeric.shape[1]:
            scale = torch.from_numpy(self._num_scale[:, columns])
            constant = F.embedding(value_rows.T, torch.from_numpy(self._num_rows[:, columns]))
            parts.append(torch.addcmul(constant, numeric.T[:, :, None], scale[:, None]))
        first = torch.cat(parts) if len(parts) > 1 else parts[0]
        x = self._torch_blocks(first.transpose(0, 1).contiguous()).sum(1)
        raw = torch.addmm(torch.from_numpy(self._head_bias), x, torch.from_numpy(self._head_weight))
        return _membership_scores(raw) if self.membership else raw

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
        self, problems: Sequence[ProblemLike], masks: np.ndarray | None = None, top: int = 1, *,
        device: str | None = None,
    ) -> list[list[tuple[str, float]]]:
        """:meth:`select_one` for many problems in batched passes; ``masks`` is bool ``[n, n_kernels]`` or None;
        every problem runs on ``device`` (see :meth:`encode_one`).

        Raises:
            InputError: a problem is invalid, or the device is needed and missing or undescribed.
            ValueError: ``top`` < 1.
        """
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        if not problems:
            return []
        columns = problem_columns(problems)
        if device is not None:
            columns["device"] = np.array([device] * len(problems))
        probabilities = self.probabilities(self.encode(columns), masks)
        ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
        return [
            [(self.kernels[j], float(probabilities[i, j])) for j in row if masks is None or masks[i, j]]
            for i, row in enumerate(ranked)
        ]
