"""Compiled CPU code of the fast inference path (numba): the Γ-block forward pass and the masked pick.

:class:`reformer.inference.FastReformer` pre-arranges a trained Γ-block
model's weights (embedding folded into the first block's projection, LayerNorm
affines folded forward, mean over tokens folded into the head; see its module
docstring); this module runs them.  One problem through three blocks of
width 64 over ~36 tokens is ~1.7 MFLOP: with numpy or torch, the dozen
small elementwise calls per block (activation, residual add, LayerNorm, bias)
cost more in per-call overhead than the matmuls cost in arithmetic.  Compiled,
the whole pass is one call whose loops run over contiguous float32 rows, so
the compiler vectorises them (``fastmath``: FMA and reassociated sums).

* :meth:`GammaWeights.logits_one` scores one problem on the calling thread (no thread launch).
* :meth:`GammaWeights.logits_many` scores a batch, problems spread over numba's threads.
* :func:`masked_top1` picks the best applicable kernel of one problem and its probability.

GELU is exact GELU, ``x Φ(x)``, with erf evaluated by a rational function
``z P(z²) / Q(z²)`` on ``|z| <= 4`` (:func:`erf_coefficients`, fitted once at
import; max error 1e-7, the size of float32 round-off), because a libm
``erf`` call per element does not vectorise.  Results agree with the torch
model up to float32 rounding (summation order differs from BLAS).

Compiled functions are cached on disk (numba ``cache=True``): the first call
in a fresh environment compiles for a few seconds, later processes load it.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

#: Activation codes understood by the kernel, by the model's activation name.
ACTIVATION_CODES = {"gelu": 0, "relu": 1, "silu": 2, "tanh": 3}
#: erf(z) for |z| >= ERF_CLAMP is 1 to float32 precision (1 - erf(4) = 1.5e-8).
ERF_CLAMP = 4.0


@functools.cache
def erf_coefficients(p_degree: int = 5, q_degree: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (ascending powers of z²) of ``erf(z) ≈ z P(z²) / Q(z²)`` on ``[0, ERF_CLAMP]``, ``Q(0) = 1``.

    Fitted by iteratively reweighted linear least squares on ``erf·Q - z·P = 0``
    (weights ``1/|Q|`` make the residual the approximation's error), against
    ``math.erf`` on 20,000 points.  The function is odd, so the fit covers
    negative z too.  Returned as float32, the precision the kernel computes in.
    """
    z = np.linspace(1e-4, ERF_CLAMP, 20_000)
    s = z * z
    exact = np.array([math.erf(v) for v in z])
    weight = np.ones_like(z)
    p = q = np.zeros(1)
    for _ in range(8):
        columns = [z * s**i for i in range(p_degree + 1)] + [-exact * s**j for j in range(1, q_degree + 1)]
        design = np.stack(columns, axis=1)
        solution = np.linalg.lstsq(design * weight[:, None], exact * weight, rcond=None)[0]
        p, q = solution[: p_degree + 1], np.concatenate([[1.0], solution[p_degree + 1 :]])
        weight = 1.0 / np.abs(np.polynomial.polynomial.polyval(s, q))
    return p.astype(np.float32), q.astype(np.float32)


# The fitted coefficients become compile-time constants of the kernel (numba freezes globals), and the
# Horner steps are written out: a loop over a runtime-length array would stop the element loop vectorising.
_P, _Q = erf_coefficients()
_P0, _P1, _P2, _P3, _P4, _P5 = (np.float32(c) for c in _P)
_Q1, _Q2, _Q3, _Q4, _Q5 = (np.float32(c) for c in _Q[1:])
_CLAMP = np.float32(ERF_CLAMP)
_HALF, _ONE, _ZERO = np.float32(0.5), np.float32(1.0), np.float32(0.0)
_SQRT_HALF = np.float32(math.sqrt(0.5))


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _erf(z):  # pragma: no cover - compiled
    z = np.minimum(np.maximum(z, -_CLAMP), _CLAMP)
    s = z * z
    num = ((((_P5 * s + _P4) * s + _P3) * s + _P2) * s + _P1) * s + _P0
    den = ((((_Q5 * s + _Q4) * s + _Q3) * s + _Q2) * s + _Q1) * s + _ONE
    return z * num / den


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _activate_rows(zw, bias, code, out):  # pragma: no cover - compiled
    """``out[t, c] = φ(zw[t, c] + bias[c])`` for the first ``out.shape[1]`` columns; one loop per activation
    so that each vectorises (a per-element branch on ``code`` would not)."""
    d = out.shape[1]
    for t in range(out.shape[0]):
        z, h = zw[t], out[t]
        if code == 0:
            for c in range(d):
                v = z[c] + bias[c]
                h[c] = _HALF * v * (_ONE + _erf(v * _SQRT_HALF))
        elif code == 1:
            for c in range(d):
                h[c] = max(z[c] + bias[c], _ZERO)
        elif code == 2:
            for c in range(d):
                v = z[c] + bias[c]
                h[c] = v / (_ONE + np.exp(-v))
        else:
            for c in range(d):
                h[c] = np.tanh(z[c] + bias[c])


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _forward(cat_rows, numeric, value_rows, cat_table, num_scale, num_rows, mix, weight, bias,
             head_weight, head_bias, nonlinear, direct, activation, eps, membership, out):  # pragma: no cover - compiled
    """Logits of one problem into ``out`` [K]; see :class:`GammaWeights` for the arguments."""
    n_cat = cat_rows.shape[0]
    n_tokens = n_cat + numeric.shape[0]
    cols = cat_table.shape[1]
    d = head_weight.shape[0]
    inv_d = _ONE / np.float32(d)
    zw = np.empty((n_tokens, cols), dtype=np.float32)
    hidden = np.empty((n_tokens, d), dtype=np.float32)
    y = np.empty((n_tokens, d), dtype=np.float32)
    x = np.empty((n_tokens, d), dtype=np.float32)
    # The first block's projection of the embedded tokens: a table row per categorical token,
    # value * scale + (constant row of the token's exact value) per numeric token.
    for t in range(n_cat):
        zw[t, :] = cat_table[cat_rows[t]]
    for j in range(numeric.shape[0]):
        v, row, scale, z = numeric[j], num_rows[value_rows[j]], num_scale[j], zw[n_cat + j]
        for c in range(cols):
            z[c] = v * scale[c] + row[c]
    mixed = np.empty((n_tokens, d), dtype=np.float32)
    b = np.zeros(cols, dtype=np.float32)  # the first block's bias is already in its folded tables
    for block in range(mix.shape[0]):
        if block > 0:
            np.dot(x, weight[block - 1], zw)  # BLAS sgemm (through SciPy); its bias is added by the readers below
            b = bias[block - 1]
        if nonlinear:
            _activate_rows(zw, b, activation, hidden)
            np.dot(mix[block], hidden, mixed)
        # y = P·φ(·) + X W2 + b2 (paths present), then LayerNorm without its affine
        # (folded into the next projection or the head).
        for t in range(n_tokens):
            yt, xt, z = y[t], x[t], zw[t]
            if nonlinear and direct:
                m = mixed[t]
                for c in range(d):
                    yt[c] = m[c] + z[d + c] + b[d + c]
            elif nonlinear:
                yt[:] = mixed[t]
            else:
                for c in range(d):
                    yt[c] = z[c] + b[c]
            mean = _ZERO
            for c in range(d):
                mean += yt[c]
            mean *= inv_d
            var = _ZERO
            for c in range(d):
                var += (yt[c] - mean) * (yt[c] - mean)
            inv = _ONE / np.sqrt(var * inv_d + eps)
            for c in range(d):
                xt[c] = (yt[c] - mean) * inv
    # The head is linear: sum the tokens first (its 1/L is folded into head_weight).
    pooled = np.zeros(d, dtype=np.float32)
    for t in range(n_tokens):
        xt = x[t]
        for c in range(d):
            pooled[c] += xt[c]
    if not membership:
        out[:] = head_bias
        for c in range(d):
            xv, hw = pooled[c], head_weight[c]
            for k in range(out.shape[0]):
                out[k] += xv * hw[k]
        return
    # The membership head: [z | u] from one [d, 2K] head, then z + log σ(u), with
    # log σ(u) = min(u, 0) - log1p(exp(-|u|)) (no overflow for either sign).
    raw = head_bias.copy()
    for c in range(d):
        xv, hw = pooled[c], head_weight[c]
        for k in range(raw.shape[0]):
            raw[k] += xv * hw[k]
    n_kernels = out.shape[0]
    for k in range(n_kernels):
        u = raw[n_kernels + k]
        out[k] = raw[k] + min(u, _ZERO) - np.log1p(np.exp(-abs(u)))


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _logits_one(cat_rows, numeric, value_rows, cat_table, num_scale, num_rows, mix, weight, bias,
                head_weight, head_bias, nonlinear, direct, activation, eps, membership, out):  # pragma: no cover
    _forward(cat_rows, numeric, value_rows, cat_table, num_scale, num_rows, mix, weight, bias,
             head_weight, head_bias, nonlinear, direct, activation, eps, membership, out)


@numba.njit(cache=True, fastmath=True, error_model="numpy", parallel=True)
def _logits_many(cat_rows, numeric, value_rows, cat_table, num_scale, num_rows, mix, weight, bias,
                 head_weight, head_bias, nonlinear, direct, activation, eps, membership, out):  # pragma: no cover
    for i in numba.prange(out.shape[0]):
        _forward(cat_rows[i], numeric[i], value_rows[i], cat_table, num_scale, num_rows, mix, weight, bias,
                 head_weight, head_bias, nonlinear, direct, activation, eps, membership, out[i])


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """threadpoolctl's handle on the loaded BLAS libraries, among them SciPy's, which compiled ``np.dot`` calls."""
    import scipy.linalg.cython_blas  # noqa: F401  (loaded first: a controller only sees libraries already loaded)

    return ThreadpoolController()


@dataclasses.dataclass(frozen=True, eq=False)
class GammaWeights:
    """A Γ-block model's pre-arranged float32 weights, as the kernel reads them.

    ``cols`` is the width of a block's fused projection ``[W1 | W2]`` (d or 2d,
    for the paths present); ``L`` tokens (``C`` categorical first), ``K`` kernels.

    Attributes:
        cat_table: ``[rows, cols]`` first-block projection of each categorical table row (position included).
        num_scale: ``[N, cols]`` per numeric token, the projection of its learnt scale, for standardised values.
        num_scale_centred: ``num_scale / std``, for values that are only centred (``log2(1 + x) - mean``).
        num_rows: ``[rows, cols]`` per (numeric token, exact-value id), the constant part of its projection.
        mix: ``[blocks, L, L]`` token mixing P of each block (zeros without the nonlinear path).
        weight: ``[blocks - 1, d, cols]`` projections of blocks 2.. with the previous norm's scale folded in.
        bias: ``[blocks - 1, cols]`` their biases, the previous norm's shift folded in.
        head_weight: ``[d, K]`` the head, last norm's scale and the 1/L of the mean folded in; ``[d, 2K]`` with
            ``membership``: the ranking logits z, then the membership logits u.
        head_bias: ``[K]`` (``[2K]`` with ``membership``).
        nonlinear, direct: which paths the blocks have.
        activation: the model's activation name (a key of :data:`ACTIVATION_CODES`).
        eps: the LayerNorm epsilon.
        membership: the model has a membership head; its scores are ``z + log σ(u)``.
    """

    cat_table: np.ndarray
    num_scale: np.ndarray
    num_scale_centred: np.ndarray
    num_rows: np.ndarray
    mix: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    head_weight: np.ndarray
    head_bias: np.ndarray
    nonlinear: bool
    direct: bool
    activation: str
    eps: float
    membership: bool = False

    @property
    def n_kernels(self) -> int:
        return self.head_bias.shape[0] // (2 if self.membership else 1)

    def _arguments(self, scale: np.ndarray) -> tuple:
        return (self.cat_table, scale, self.num_rows, self.mix, self.weight, self.bias, self.head_weight,
                self.head_bias, self.nonlinear, self.direct, ACTIVATION_CODES[self.activation], np.float32(self.eps),
                self.membership)

    def logits_one(self, cat_rows: np.ndarray, centred: np.ndarray, value_rows: np.ndarray) -> np.ndarray:
        """Logits ``float32 [K]`` of one problem on the calling thread.

        ``cat_rows`` int64 ``[C]`` rows of ``cat_table``; ``centred`` float32 ``[N]``
        numeric values ``log2(1 + x) - mean``; ``value_rows`` int64 ``[N]`` rows of ``num_rows``.
        """
        out = np.empty(self.n_kernels, dtype=np.float32)
        _logits_one(cat_rows, centred, value_rows, *self._arguments(self.num_scale_centred), out)
        return out

    def logits_many(self, cat_rows: np.ndarray, numeric: np.ndarray, value_rows: np.ndarray, *, threads: int) -> np.ndarray:
        """Logits ``float32 [n, K]`` of ``n`` problems on ``threads`` numba threads.

        ``cat_rows`` int64 ``[n, C]``; ``numeric`` float32 ``[n, N]`` standardised values;
        ``value_rows`` int64 ``[n, N]``.  BLAS runs single-threaded for the length of the call (restored after):
        each numba thread already scores whole problems, and OpenBLAS threads started inside numba's OpenMP
        region oversubscribe the cores (OpenBLAS warns on stderr, once per matmul, that this may hang) as soon
        as the model is wide enough for OpenBLAS to split its matmuls (d = 256).
        """
        out = np.empty((numeric.shape[0], self.n_kernels), dtype=np.float32)
        previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        try:
            with _blas_controller().limit(limits=1, user_api="blas"):
                _logits_many(cat_rows, numeric, value_rows, *self._arguments(self.num_scale), out)
        finally:
            numba.set_num_threads(previous)
        return out


@numba.njit(cache=True, fastmath=False)
def _masked_top1(logits, mask):  # pragma: no cover - compiled
    best = -1
    for k in range(logits.shape[0]):
        if mask[k] and (best < 0 or logits[k] > logits[best]):
            best = k
    if best < 0:
        return best, 0.0
    total = 0.0
    for k in range(logits.shape[0]):
        if mask[k]:
            total += math.exp(float(logits[k]) - float(logits[best]))
    return best, 1.0 / total


def masked_top1(logits: np.ndarray, mask: np.ndarray) -> tuple[int, float]:
    """The index of the largest logit where ``mask`` (bool, same length) is True, and its softmax probability
    over the masked-in logits (computed in float64); ``(-1, 0.0)`` when the mask marks nothing.
    Ties go to the lowest index, as with ``np.argmax``."""
    return _masked_top1(logits, mask)
