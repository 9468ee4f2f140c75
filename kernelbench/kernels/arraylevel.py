"""Convolution algorithms written once against an array namespace ``xp`` (numpy or cupy).

The CPU backend passes ``numpy``, the CUDA backend ``cupy``; the code path is
identical, so the numpy tests validate what runs on the GPU.  Only functions
that exist in both libraries with the same semantics are used: ``zeros``,
``empty``, ``matmul(out=)``, ``multiply(out=)``, ``conj``, ``fft.rfft2`` /
``fft.irfft2``, ``lib.stride_tricks.as_strided`` (strides in bytes in both),
``ascontiguousarray``, ``asarray``, slicing, ``reshape`` of contiguous arrays,
``transpose`` and slice assignment.

Scope: 2D forward convolution, logical NCHW activations and OIHW filters, fp32
or fp16 (bf16 has no numpy dtype; int8 needs requantisation these algorithms do
not define).

API, for every algorithm ``a`` in :data:`ALGORITHMS`:

* ``a.applies(problem)`` -> ``None`` or the reason the algorithm cannot compute it.
* ``a.prepare(xp, problem, x, w, **options)`` -> :class:`ArrayCall`.  ``x`` (N, C, H, W) and
  ``w`` (K, C/groups, FH, FW) are ``xp`` arrays of the problem's dtype.  Untimed
  work happens here: weight transforms, allocation of padded input buffers,
  workspaces and the output.  Raises ``ValueError`` for a problem ``applies``
  rejects.  ``options`` are backend tuning knobs (only ``depthwise_direct`` has
  one, ``block_bytes``); an option an algorithm does not take raises ``TypeError``.
* ``call.run()`` is the timed call.  It reads ``x`` (copying it into the padded
  buffer is part of the algorithm and timed) and returns a C-contiguous
  (N, K, OH, OW) array of the input dtype.  It is the same buffer on every run,
  so copy it if you keep it past the next run.
* ``call.workspace_bytes``: bytes of the buffers the call holds besides ``x``,
  ``w`` and the output (padded input, columns, transformed weights, ...).
  Temporaries the library allocates inside ``run`` are not counted: numpy and
  cupy FFTs allocate their outputs, and ``matmul`` copies operands it cannot
  hand to BLAS directly.

Precision: GEMM-style algorithms compute in the input dtype and accumulate as
the library does (numpy's float16 matmul has no BLAS path and accumulates each
dot product in float32; cupy/cuBLAS float16 GEMMs accumulate in float32 by
default; the depthwise and per-tap accumulations are elementwise float16
additions).  FFT and Winograd run in float32 for fp16 inputs, because their
transforms amplify rounding error well beyond what an fp16 tolerance allows,
and round the output to fp16.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from kernelbench.problem import ConvProblem

#: Input dtypes these algorithms accept (problem dtype names).
SUPPORTED_DTYPES = ("fp32", "fp16")


@dataclasses.dataclass(frozen=True)
class ArrayCall:
    """A prepared algorithm.

    Attributes:
        run: the timed call; returns the output, a C-contiguous (N, K, OH, OW) ``xp`` array.
        workspace_bytes: bytes held beyond the inputs and the output (see the module docstring).
    """

    run: Callable[[], Any]
    workspace_bytes: int


@dataclasses.dataclass(frozen=True)
class ArrayAlgorithm:
    """One array-level algorithm.

    Attributes:
        name: short id, e.g. ``im2col_gemm``; backends prefix it (``numpy_im2col_gemm``).
        family: the dataset's ``algorithm`` column (``im2col_gemm``, ``fft``, ``winograd``, ...).
        applies: ``problem -> None`` or the reason this algorithm cannot compute it.
        prepare: ``(xp, problem, x, w, **options) -> ArrayCall``.
        description: one line for listings.
        fp16_in_float32: fp16 inputs are computed in float32 (the transform algorithms), not in fp16.
    """

    name: str
    family: str
    applies: Callable[[ConvProblem], str | None]
    prepare: Callable[..., ArrayCall]
    description: str
    fp16_in_float32: bool = False


# ---------------------------------------------------------------- shared helpers


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Sizes of a 2D problem under short names (g = groups, cg/kg = channels per group)."""

    n: int
    c: int
    k: int
    g: int
    cg: int
    kg: int
    h: int
    w: int
    fh: int
    fw: int
    oh: int
    ow: int
    ph: int
    pw: int
    sh: int
    sw: int
    dh: int
    dw: int

    @classmethod
    def of(cls, p: ConvProblem) -> _Geometry:
        return cls(n=p.batch, c=p.in_channels, k=p.out_channels, g=p.groups, cg=p.in_channels // p.groups,
                   kg=p.out_channels // p.groups, h=p.in_h, w=p.in_w, fh=p.filter_h, fw=p.filter_w, oh=p.out_h,
                   ow=p.out_w, ph=p.pad_h, pw=p.pad_w, sh=p.stride_h, sw=p.stride_w, dh=p.dilation_h,
                   dw=p.dilation_w)

    @property
    def taps(self) -> int:
        return self.fh * self.fw


class _Buffers:
    """Allocates the buffers of one prepared call and counts their bytes (the workspace)."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.nbytes = 0

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.hold(self.xp.zeros(shape, dtype=dtype))

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.hold(self.xp.empty(shape, dtype=dtype))

    def hold(self, array: Any) -> Any:
        """Count a freshly computed array (never a view of the inputs)."""
        self.nbytes += int(array.nbytes)
        return array

    def copy(self, array: Any) -> Any:
        """An owned C-contiguous copy of ``array`` (a rearranged filter), counted."""
        owned = self.empty(array.shape, array.dtype)
        owned[...] = array
        return owned


def _common_reason(p: ConvProblem) -> str | None:
    if p.direction != "fwd":
        return "forward convolution only"
    if p.spatial_dims != 2:
        return "2D convolution only"
    if p.layout != "NCHW":
        return "NCHW layout only"
    if p.dtype not in SUPPORTED_DTYPES:
        return f"dtype {p.dtype} not supported (only {', '.join(SUPPORTED_DTYPES)})"
    return None


def _require(applies: Callable[[ConvProblem], str | None], p: ConvProblem) -> None:
    reason = applies(p)
    if reason is not None:
        raise ValueError(f"algorithm does not apply to {p.describe()}: {reason}")


def _transform_dtype(dtype: Any) -> Any:
    """Compute dtype of the transform algorithms (FFT, Winograd): float32 for float16 inputs."""
    return np.float32 if np.dtype(dtype) == np.float16 else dtype


def _padded_input(buffers: _Buffers, x: Any, geo: _Geometry, dtype: Any, *, height: int, width: int,
                  ) -> tuple[Any, Callable[[], None]]:
    """A zeroed (N, C, height, width) buffer with ``x`` placed at offset (ph, pw), and the timed ``fill``.

    Borders stay zero across runs because ``fill`` writes only the interior.  When no
    padding or cast is needed the buffer is ``x`` itself and ``fill`` does nothing.
    """
    if (height, width) == (geo.h, geo.w) and np.dtype(x.dtype) == np.dtype(dtype):
        return x, lambda: None
    buf = buffers.zeros((geo.n, geo.c, height, width), dtype)
    interior = buf[:, :, geo.ph:geo.ph + geo.h, geo.pw:geo.pw + geo.w]

    def fill() -> None:
        interior[...] = x

    return buf, fill


def _grouped_windows(xp: Any, buf: Any, geo: _Geometry, shape: tuple[int, ...],
                     steps: tuple[tuple[int, int], ...]) -> Any:
    """A strided view of a padded NCHW ``buf`` as (N, G, C/G, *shape) without copying.

    ``steps`` gives, per trailing axis, its step as a multiple of (row, column) strides:
    ``(a, b)`` moves ``a`` rows and ``b`` columns.
    """
    s_n, s_c, s_h, s_w = buf.strides
    trailing = tuple(a * s_h + b * s_w for a, b in steps)
    return xp.lib.stride_tricks.as_strided(buf, shape=(geo.n, geo.g, geo.cg) + shape,
                                           strides=(s_n, geo.cg * s_c, s_c) + trailing)


def _tap_slice(start: int, step: int, count: int) -> slice:
    return slice(start, start + step * (count - 1) + 1, step)


# ---------------------------------------------------------------- im2col + GEMM


def applies_im2col_gemm(p: ConvProblem) -> str | None:
    """Any 2D forward NCHW fp32/fp16 problem."""
    return _common_reason(p)


def prepare_im2col_gemm(xp: Any, problem: ConvProblem, x: Any, w: Any) -> ArrayCall:
    """im2col + GEMM: gather every filter window into a column matrix, then one GEMM per group for the batch.

    Columns are laid out (G, C/G * FH * FW, N * OH * OW), so each group's whole batch
    is a single GEMM with the (K/G, C/G * FH * FW) filter matrix; the (G, K/G, N, OH*OW)
    product is then transposed into the NCHW output (timed).
    """
    _require(applies_im2col_gemm, problem)
    geo = _Geometry.of(problem)
    x = xp.ascontiguousarray(x)
    buffers = _Buffers(xp)
    xpad, fill = _padded_input(buffers, x, geo, x.dtype, height=geo.h + 2 * geo.ph, width=geo.w + 2 * geo.pw)
    windows = _grouped_windows(xp, xpad, geo, (geo.fh, geo.fw, geo.oh, geo.ow),
                               ((geo.dh, 0), (0, geo.dw), (geo.sh, 0), (0, geo.sw)))
    # (N, G, Cg, FH, FW, OH, OW) -> (G, Cg, FH, FW, N, OH, OW): the column matrix's row and column order.
    windows_by_column = windows.transpose(1, 2, 3, 4, 0, 5, 6)
    cols = buffers.empty((geo.g, geo.cg, geo.fh, geo.fw, geo.n, geo.oh, geo.ow), x.dtype)
    cols_matrix = cols.reshape(geo.g, geo.cg * geo.taps, geo.n * geo.oh * geo.ow)
    w_matrix = buffers.copy(w.reshape(geo.g, geo.kg, geo.cg * geo.taps))
    product = buffers.empty((geo.g, geo.kg, geo.n * geo.oh * geo.ow), x.dtype)
    out = xp.empty((geo.n, geo.k, geo.oh, geo.ow), dtype=x.dtype)
    out_by_product = out.reshape(geo.n, geo.g, geo.kg, geo.oh * geo.ow).transpose(1, 2, 0, 3)
    product_4d = product.reshape(geo.g, geo.kg, geo.n, geo.oh * geo.ow)

    def run() -> Any:
        fill()
        cols[...] = windows_by_column
        xp.matmul(w_matrix, cols_matrix, out=product)
        out_by_product[...] = product_4d
        return out

    return ArrayCall(run=run, workspace_bytes=buffers.nbytes)


# ---------------------------------------------------------------- 1x1 as GEMM


def applies_gemm_1x1(p: ConvProblem) -> str | None:
    """1x1 filters without padding (any stride: the strided input is gathered first)."""
    reason = _common_reason(p)
    if reason:
        return reason
    if (p.filter_h, p.filter_w) != (1, 1):
        return "1x1 filters only"
    if p.pad_h or p.pad_w:
        return "no padding allowed (a padded 1x1 output border is all zeros)"
    return None


def prepare_gemm_1x1(xp: Any, problem: ConvProblem, x: Any, w: Any) -> ArrayCall:
    """1x1 convolution as a plain GEMM per image and group: (K/G, C/G) @ (C/G, H*W).

    With stride 1 the input is used in place; with a larger stride the subsampled
    pixels are gathered into a buffer first (timed).
    """
    _require(applies_gemm_1x1, problem)
    geo = _Geometry.of(problem)
    x = xp.ascontiguousarray(x)
    buffers = _Buffers(xp)
    w_matrix = buffers.copy(w.reshape(geo.g, geo.kg, geo.cg))
    out = xp.empty((geo.n, geo.k, geo.oh, geo.ow), dtype=x.dtype)
    out_matrix = out.reshape(geo.n, geo.g, geo.kg, geo.oh * geo.ow)
    if (geo.sh, geo.sw) == (1, 1):
        source = None
        x_matrix = x.reshape(geo.n, geo.g, geo.cg, geo.h * geo.w)
    else:
        source = x[:, :, ::geo.sh, ::geo.sw]
        gathered = buffers.empty((geo.n, geo.c, geo.oh, geo.ow), x.dtype)
        x_matrix = gathered.reshape(geo.n, geo.g, geo.cg, geo.oh * geo.ow)

    def run() -> Any:
        if source is not None:
            gathered[...] = source
        xp.matmul(w_matrix, x_matrix, out=out_matrix)
        return out

    return ArrayCall(run=run, workspace_bytes=buffers.nbytes)


# ---------------------------------------------------------------- FFT


def applies_fft(p: ConvProblem) -> str | None:
    """Unit stride (dilation is free: the dilated filter is embedded in the transform)."""
    reason = _common_reason(p)
    if reason:
        return reason
    if (p.stride_h, p.stride_w) != (1, 1):
        return "stride 1 only (a strided FFT convolution computes and discards most outputs)"
    return None


def prepare_fft(xp: Any, problem: ConvProblem, x: Any, w: Any) -> ArrayCall:
    """FFT convolution: rfft2 of the padded input, per-frequency batched GEMM over channels, irfft2.

    Cross-correlation is ``irfft2(rfft2(x) * conj(rfft2(w)))`` on the padded size
    (Hp, Wp); outputs 0..OH-1 see no circular wrap-around because the dilated filter
    extent is at most Hp - OH + 1.  Per frequency f and group g the channel mix is a
    GEMM (K/G, C/G) @ (C/G, N).  The filter spectrum is computed in ``prepare``.
    """
    _require(applies_fft, problem)
    geo = _Geometry.of(problem)
    x = xp.ascontiguousarray(x)
    dtype = _transform_dtype(x.dtype)
    buffers = _Buffers(xp)
    hp, wp = geo.h + 2 * geo.ph, geo.w + 2 * geo.pw
    wf = wp // 2 + 1
    freqs = hp * wf
    xpad, fill = _padded_input(buffers, x, geo, dtype, height=hp, width=wp)

    w_embedded = xp.zeros((geo.k, geo.cg, hp, wp), dtype=dtype)
    w_embedded[:, :, _tap_slice(0, geo.dh, geo.fh), _tap_slice(0, geo.dw, geo.fw)] = w
    w_spectrum = xp.conj(xp.fft.rfft2(w_embedded))  # (K, Cg, Hp, Wf)
    # (G, F, Kg, Cg): one (Kg, Cg) matrix per group and frequency.
    w_by_freq = buffers.hold(xp.ascontiguousarray(
        w_spectrum.reshape(geo.g, geo.kg, geo.cg, freqs).transpose(0, 3, 1, 2)))
    complex_dtype = w_by_freq.dtype
    x_by_freq = buffers.empty((geo.g, freqs, geo.cg, geo.n), complex_dtype)
    y_by_freq = buffers.empty((geo.g, freqs, geo.kg, geo.n), complex_dtype)
    y_spectrum = buffers.empty((geo.n, geo.k, hp, wf), complex_dtype)
    # Views that move between the (N, C, F) spectra and the (G, F, C, N) GEMM operands.
    y_spectrum_by_freq = y_spectrum.reshape(geo.n, geo.g, geo.kg, freqs).transpose(1, 3, 2, 0)
    out = xp.empty((geo.n, geo.k, geo.oh, geo.ow), dtype=x.dtype)

    def run() -> Any:
        fill()
        x_spectrum = xp.fft.rfft2(xpad)  # (N, C, Hp, Wf)
        x_by_freq[...] = x_spectrum.reshape(geo.n, geo.g, geo.cg, freqs).transpose(1, 3, 2, 0)
        xp.matmul(w_by_freq, x_by_freq, out=y_by_freq)
        y_spectrum_by_freq[...] = y_by_freq
        y = xp.fft.irfft2(y_spectrum, s=(hp, wp))
        out[...] = y[:, :, :geo.oh, :geo.ow]
        return out

    return ArrayCall(run=run, workspace_bytes=buffers.nbytes)


# ---------------------------------------------------------------- Winograd


@dataclasses.dataclass(frozen=True)
class WinogradTransform:
    """Matrices of Winograd F(m x m, r x r): ``Y = AT [(G g G^T) * (BT d B)] A`` per tile.

    ``at`` is (m, alpha), ``g`` (alpha, r), ``bt`` (alpha, alpha), alpha = m + r - 1.
    """

    m: int
    r: int
    at: np.ndarray
    g: np.ndarray
    bt: np.ndarray

    @property
    def alpha(self) -> int:
        return self.m + self.r - 1


# Interpolation points 0, 1, -1 (and infinity) for F(2, 3), and 0, ±1, ±2 (and infinity)
# for F(4, 3): the standard choices (Lavin & Gray, 2016).  The 1D identity
# AT @ ((G @ g) * (BT @ d)) == correlate(d, g) is checked in the tests.
WINOGRAD_F2X2_3X3 = WinogradTransform(
    m=2, r=3,
    at=np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64),
    g=np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64),
    bt=np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64),
)
WINOGRAD_F4X4_3X3 = WinogradTransform(
    m=4, r=3,
    at=np.array([[1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 0],
                 [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], dtype=np.float64),
    g=np.array([[1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1]], dtype=np.float64),
    bt=np.array([[4, 0, -5, 0, 1, 0],
                 [0, -4, -4, 1, 1, 0],
                 [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0],
                 [0, 4, 0, -5, 0, 1]], dtype=np.float64),
)


def applies_winograd(p: ConvProblem) -> str | None:
    """3x3 filters, stride 1, dilation 1."""
    reason = _common_reason(p)
    if reason:
        return reason
    if (p.filter_h, p.filter_w) != (3, 3):
        return "3x3 filters only"
    if (p.stride_h, p.stride_w) != (1, 1):
        return "stride 1 only"
    if (p.dilation_h, p.dilation_w) != (1, 1):
        return "dilation 1 only"
    return None


def prepare_winograd(xp: Any, problem: ConvProblem, x: Any, w: Any, *, transform: WinogradTransform) -> ArrayCall:
    """Winograd F(m x m, 3 x 3) with every stage a GEMM.

    The 2D tile transforms are Kronecker products acting on flattened tiles
    (row-major ``vec(BT d B) = (BT kron BT) vec(d)``), so the input transform is one
    (alpha^2, alpha^2) @ (alpha^2, G*C/G*tiles) GEMM, the channel mix is one batched
    GEMM per (alpha^2 position, group), and the output transform is one
    (m^2, alpha^2) GEMM.  Output tiles past OH / OW are computed on zero padding and
    cropped.  The filter transform ``G w G^T`` happens in ``prepare``.
    """
    _require(applies_winograd, problem)
    geo = _Geometry.of(problem)
    x = xp.ascontiguousarray(x)
    dtype = _transform_dtype(x.dtype)
    m, alpha = transform.m, transform.alpha
    a2 = alpha * alpha
    th, tw = math.ceil(geo.oh / m), math.ceil(geo.ow / m)
    tiles = geo.n * th * tw
    buffers = _Buffers(xp)
    xpad, fill = _padded_input(buffers, x, geo, dtype, height=th * m + alpha - m, width=tw * m + alpha - m)
    windows = _grouped_windows(xp, xpad, geo, (th, tw, alpha, alpha), ((m, 0), (0, m), (1, 0), (0, 1)))
    # (N, G, Cg, TH, TW, a, a) -> (a, a, G, Cg, N, TH, TW): flattened tile index first.
    windows_by_position = windows.transpose(5, 6, 1, 2, 0, 3, 4)
    d = buffers.empty((alpha, alpha, geo.g, geo.cg, geo.n, th, tw), dtype)
    d_matrix = d.reshape(a2, geo.g * geo.cg * tiles)

    kron_b = buffers.hold(xp.asarray(np.kron(transform.bt, transform.bt), dtype=dtype))
    kron_a = buffers.hold(xp.asarray(np.kron(transform.at, transform.at), dtype=dtype))
    kron_g = xp.asarray(np.kron(transform.g, transform.g), dtype=dtype)
    w_flat = xp.asarray(w, dtype=dtype).reshape(geo.k * geo.cg, 9).T  # (9, K*Cg)
    u = buffers.hold(xp.ascontiguousarray(xp.matmul(kron_g, w_flat).reshape(a2, geo.g, geo.kg, geo.cg)))

    v = buffers.empty((a2, geo.g * geo.cg * tiles), dtype)
    v_4d = v.reshape(a2, geo.g, geo.cg, tiles)
    mixed = buffers.empty((a2, geo.g, geo.kg, tiles), dtype)
    mixed_matrix = mixed.reshape(a2, geo.g * geo.kg * tiles)
    y = buffers.empty((m * m, geo.g * geo.kg * tiles), dtype)
    # (m, m, G, Kg, N, TH, TW) -> (N, G, Kg, TH, m, TW, m): tiles back into image rows and columns.
    y_as_image = y.reshape(m, m, geo.g, geo.kg, geo.n, th, tw).transpose(4, 2, 3, 5, 0, 6, 1)
    full = buffers.empty((geo.n, geo.g, geo.kg, th, m, tw, m), dtype)
    full_cropped = full.reshape(geo.n, geo.k, th * m, tw * m)[:, :, :geo.oh, :geo.ow]
    out = xp.empty((geo.n, geo.k, geo.oh, geo.ow), dtype=x.dtype)

    def run() -> Any:
        fill()
        d[...] = windows_by_position
        xp.matmul(kron_b, d_matrix, out=v)
        xp.matmul(u, v_4d, out=mixed)
        xp.matmul(kron_a, mixed_matrix, out=y)
        full[...] = y_as_image
        out[...] = full_cropped
        return out

    return ArrayCall(run=run, workspace_bytes=buffers.nbytes)


def prepare_winograd_f2x2_3x3(xp: Any, problem: ConvProblem, x: Any, w: Any) -> ArrayCall:
    """Winograd F(2x2, 3x3): 4x4 input tiles, 2.25x fewer multiplies than direct."""
    return prepare_winograd(xp, problem, x, w, transform=WINOGRAD_F2X2_3X3)


def prepare_winograd_f4x4_3x3(xp: Any, problem: ConvProblem, x: Any, w: Any) -> ArrayCall:
    """Winograd F(4x4, 3x3): 6x6 input tiles, 4x fewer multiplies than direct, less accurate."""
    return prepare_winograd(xp, problem, x, w, transform=WINOGRAD_F4X4_3X3)


# ---------------------------------------------------------------- per-tap shifted GEMM


def applies_shifted_gemm(p: ConvProblem) -> str | None:
    """Any 2D forward NCHW fp32/fp16 problem."""
    return _common_reason(p)


def prepare_shifted_gemm(xp: Any, problem: ConvProblem, x: Any, w: Any) -> ArrayCall:
    """Direct convolution as a sum over filter taps of GEMMs on shifted input views.

    Stride 1: the padded input is flattened per channel, so the input seen by tap
    (r, s) is the contiguous slice starting at ``r*dh*Wp + s*dw`` of length OH*Wp: a
    zero-copy GEMM operand.  Each GEMM computes OH "wide" rows of Wp columns; the
    last Wp - OW columns mix neighbouring rows and are cropped at the end.
    Stride > 1: each tap's strided window is gathered into a buffer first.
    Taps accumulate into one buffer (a GEMM into a scratch buffer, then an add).
    """
    _require(applies_shifted_gemm, problem)
    geo = _Geometry.of(problem)
    x = xp.ascontiguousarray(x)
    buffers = _Buffers(xp)
    w_taps = buffers.copy(w.reshape(geo.g, geo.kg, geo.cg, geo.fh, geo.fw).transpose(3, 4, 0, 1, 2))  # FH,FW,G,Kg,Cg
    taps = [(r, s) for r in range(geo.fh) for s in range(geo.fw)]
    if (geo.sh, geo.sw) == (1, 1):
        run = _shifted_gemm_wide(xp, geo, x, w_taps, taps, buffers)
    else:
        run = _shifted_gemm_gathered(xp, geo, x, w_taps, taps, buffers)
    return ArrayCall(run=run, workspace_bytes=buffers.nbytes)


def _shifted_gemm_wide(xp: Any, geo: _Geometry, x: Any, w_taps: Any, taps: list[tuple[int, int]],
                       buffers: _Buffers) -> Callable[[], Any]:
    hp, wp = geo.h + 2 * geo.ph, geo.w + 2 * geo.pw
    plane = hp * wp + (geo.fw - 1) * geo.dw  # slack so the last tap's slice ends inside the plane
    wide = geo.oh * wp
    flat = buffers.zeros((geo.n, geo.g, geo.cg, plane), x.dtype)
    # (N, C, H, W) view of the interior of the flattened padded planes.
    shifted = flat.reshape(geo.n, geo.c, plane)[:, :, geo.ph * wp + geo.pw:]
    item = flat.strides[-1]
    interior = xp.lib.stride_tricks.as_strided(
        shifted, shape=(geo.n, geo.c, geo.h, geo.w), strides=shifted.strides[:2] + (wp * item, item))
    operands = [flat[:, :, :, r * geo.dh * wp + s * geo.dw:][:, :, :, :wide] for r, s in taps]
    acc = buffers.empty((geo.n, geo.g, geo.kg, wide), x.dtype)
    scratch = buffers.empty(acc.shape, x.dtype)
    acc_cropped = acc.reshape(geo.n, geo.k, geo.oh, wp)[:, :, :, :geo.ow]
    out = xp.empty((geo.n, geo.k, geo.oh, geo.ow), dtype=x.dtype)

    def run() -> Any:
        interior[...] = x
        for index, ((r, s), operand) in enumerate(zip(taps, operands)):
            xp.matmul(w_taps[r, s], operand, out=scratch if index else acc)
            if index:
                xp.add(acc, scratch, out=acc)
        out[...] = acc_cropped
        return out

    return run


def _shifted_gemm_gathered(xp: Any, geo: _Geometry, x: Any, w_taps: Any, taps: list[tuple[int, int]],
                           buffers: _Buffers) -> Callable[[], Any]:
    xpad, fill = _padded_input(buffers, x, geo, x.dtype, height=geo.h + 2 * geo.ph, width=geo.w + 2 * geo.pw)
    windows = [xpad[:, :, _tap_slice(r * geo.dh, geo.sh, geo.oh), _tap_slice(s * geo.dw, geo.sw, geo.ow)]
               for r, s in taps]
    gathered = buffers.empty((geo.n, geo.c, geo.oh, geo.ow), x.dtype)
    operand = gathered.reshape(geo.n, geo.g, geo.cg, geo.oh * geo.ow)
    out = xp.empty((geo.n, geo.k, geo.oh, geo.ow), dtype=x.dtype)
    acc = out.reshape(geo.n, geo.g, geo.kg, geo.oh * geo.ow)
    scratch = buffers.empty(acc.shape, x.dtype)

    def run() -> Any:
        fill()
        for index, ((r, s), window) in enumerate(zip(taps, windows)):
            gathered[...] = window
            xp.matmul(w_taps[r, s], operand, out=scratch if index else acc)
            if index:
                xp.add(acc, scratch, out=acc)
        return out

    return run


# ---------------------------------------------------------------- kn2row


def applies_kn2row(p: ConvProblem) -> str | None:
    """Any 2D forward NCHW fp32/fp16 problem."""
    return _common_reason(p)


def _tap_ranges(offset: int, stride: int, size: int, out_size: int) -> tuple[slice, slice] | None:
    """Output and input slices where input index ``o * stride + offset`` lies in [0, size), or None."""
    first = max(0, -(offset // stride))
    last = min(out_size - 1, (size - 1 - offset) // stride)
    if last < first:
        return None
    count = last - first + 1
    return slice(first, last + 1), _tap_slice(first * stride + offset, stride, count)


def prepare_kn2row(xp: Any, problem: ConvProblem, x: Any, w: Any) -> ArrayCall:
    """kn2row: one GEMM of all filter taps against the unpadded input, then shift-and-add.

    The (FH*FW*K/G, C/G) @ (C/G, H*W) GEMM per image and group yields one full-
    resolution partial image per tap; each is added into the output at its tap's
    offset, restricted to the rows and columns that fall inside the input (this is
    where padding, stride and dilation are handled).
    """
    _require(applies_kn2row, problem)
    geo = _Geometry.of(problem)
    x = xp.ascontiguousarray(x)
    buffers = _Buffers(xp)
    w_by_tap = buffers.copy(w.reshape(geo.g, geo.kg, geo.cg, geo.fh, geo.fw).transpose(0, 3, 4, 1, 2))
    w_stacked = w_by_tap.reshape(geo.g, geo.taps * geo.kg, geo.cg)
    x_matrix = x.reshape(geo.n, geo.g, geo.cg, geo.h * geo.w)
    partial = buffers.empty((geo.n, geo.g, geo.taps * geo.kg, geo.h * geo.w), x.dtype)
    partial_by_tap = partial.reshape(geo.n, geo.g, geo.fh, geo.fw, geo.kg, geo.h, geo.w)
    out = xp.empty((geo.n, geo.k, geo.oh, geo.ow), dtype=x.dtype)
    out_5d = out.reshape(geo.n, geo.g, geo.kg, geo.oh, geo.ow)
    updates = []
    for r in range(geo.fh):
        rows = _tap_ranges(r * geo.dh - geo.ph, geo.sh, geo.h, geo.oh)
        for s in range(geo.fw):
            cols = _tap_ranges(s * geo.dw - geo.pw, geo.sw, geo.w, geo.ow)
            if rows is None or cols is None:
                continue  # this tap only ever sees padding
            updates.append((out_5d[:, :, :, rows[0], cols[0]], partial_by_tap[:, :, r, s, :, rows[1], cols[1]]))

    def run() -> Any:
        xp.matmul(w_stacked, x_matrix, out=partial)
        out[...] = 0
        for target, source in updates:
            xp.add(target, source, out=target)
        return out

    return ArrayCall(run=run, workspace_bytes=buffers.nbytes)


# ---------------------------------------------------------------- depthwise direct


def applies_depthwise(p: ConvProblem) -> str | None:
    """Depthwise problems: groups == in_channels (any channel multiplier K/C)."""
    reason = _common_reason(p)
    if reason:
        return reason
    if p.groups != p.in_channels:
        return "depthwise only (groups == in_channels)"
    return None


def prepare_depthwise(xp: Any, problem: ConvProblem, x: Any, w: Any, *, block_bytes: int | None = None) -> ArrayCall:
    """Depthwise direct convolution: per filter tap, a broadcast multiply-add.

    Output channel ``c * M + j`` (M = K / C) reads input channel ``c``; each tap
    multiplies the (n, C, 1, OH, OW) shifted input view by a (C, M, 1, 1) weight
    column and adds it to the output.  ``block_bytes`` (a cache size) splits the batch
    into blocks whose output fits in it, so the nine passes over each block hit the
    cache (halves the time on a CPU); None processes the whole batch per pass (GPU).
    """
    _require(applies_depthwise, problem)
    geo = _Geometry.of(problem)
    x = xp.ascontiguousarray(x)
    buffers = _Buffers(xp)
    mult = geo.k // geo.c
    xpad, fill = _padded_input(buffers, x, geo, x.dtype, height=geo.h + 2 * geo.ph, width=geo.w + 2 * geo.pw)
    w_taps = buffers.copy(w.reshape(geo.c, mult, geo.fh, geo.fw).transpose(2, 3, 0, 1)).reshape(
        geo.fh, geo.fw, geo.c, mult, 1, 1)
    out = xp.empty((geo.n, geo.k, geo.oh, geo.ow), dtype=x.dtype)
    out_5d = out.reshape(geo.n, geo.c, mult, geo.oh, geo.ow)
    image_bytes = out_5d[0].nbytes
    block = geo.n if block_bytes is None else max(1, min(geo.n, block_bytes // max(1, image_bytes)))
    scratch = buffers.empty((block,) + out_5d.shape[1:], x.dtype)
    steps = []  # per batch block: (output block, scratch, [(input view, weight column) per tap])
    for first in range(0, geo.n, block):
        images = slice(first, min(first + block, geo.n))
        taps = [(xpad[images, :, _tap_slice(r * geo.dh, geo.sh, geo.oh), _tap_slice(s * geo.dw, geo.sw, geo.ow)]
                 [:, :, None], w_taps[r, s]) for r in range(geo.fh) for s in range(geo.fw)]
        steps.append((out_5d[images], scratch[:images.stop - images.start], taps))

    def run() -> Any:
        fill()
        for target, partial, taps in steps:
            (first_view, first_weight), rest = taps[0], taps[1:]
            xp.multiply(first_view, first_weight, out=target)
            for view, weight in rest:
                xp.multiply(view, weight, out=partial)
                xp.add(target, partial, out=target)
        return out

    return ArrayCall(run=run, workspace_bytes=buffers.nbytes)


# ---------------------------------------------------------------- the list

ALGORITHMS: tuple[ArrayAlgorithm, ...] = (
    ArrayAlgorithm("im2col_gemm", "im2col_gemm", applies_im2col_gemm, prepare_im2col_gemm,
                   "im2col (strided view gathered once) + one GEMM per group for the whole batch"),
    ArrayAlgorithm("gemm_1x1", "gemm_1x1", applies_gemm_1x1, prepare_gemm_1x1,
                   "1x1 convolution as a plain GEMM on the input, no im2col"),
    ArrayAlgorithm("fft", "fft", applies_fft, prepare_fft,
                   "rfft2 + per-frequency batched GEMM over channels + irfft2", fp16_in_float32=True),
    ArrayAlgorithm("winograd_f2x2_3x3", "winograd", applies_winograd, prepare_winograd_f2x2_3x3,
                   "Winograd F(2x2,3x3), transforms and channel mix as batched GEMMs", fp16_in_float32=True),
    ArrayAlgorithm("winograd_f4x4_3x3", "winograd", applies_winograd, prepare_winograd_f4x4_3x3,
                   "Winograd F(4x4,3x3), transforms and channel mix as batched GEMMs", fp16_in_float32=True),
    ArrayAlgorithm("shifted_gemm", "direct", applies_shifted_gemm, prepare_shifted_gemm,
                   "direct: sum over filter taps of GEMMs on shifted input views"),
    ArrayAlgorithm("kn2row", "kn2row", applies_kn2row, prepare_kn2row,
                   "kn2row: one GEMM for all taps on the unpadded input, then shift-and-add"),
    ArrayAlgorithm("depthwise_direct", "direct", applies_depthwise, prepare_depthwise,
                   "depthwise direct: per-tap broadcast multiply-add over the batch"),
)


def algorithm(name: str) -> ArrayAlgorithm:
    """The algorithm called ``name``.  Raises KeyError listing the names if there is none."""
    for candidate in ALGORITHMS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no array-level algorithm {name!r}; known: {', '.join(a.name for a in ALGORITHMS)}")
