// Implicit-GEMM NCHW convolution: the phases of one thread block.
//
// Per group g the convolution is the GEMM  Y[m, n] = sum_k A[m, k] * B[k, n]  with
//   m = (image, oh, ow)            M = N * OH * OW      (output pixels)
//   n = output channel in group    N = K / groups
//   k = (ci, r, s)                 K = C / groups * R * S
// A is the im2col matrix, gathered on the fly (never stored); B is the filter.
//
// Launch (kernelbench.gpu.launch.igemm_launch): grid = (ceil(M/BM), ceil(N/BN), groups),
// (BM/TM) * (BN/TN) threads in x.  A block owns a BM x BN tile of Y and walks K in
// steps of BK: every thread loads part of the A and B tiles into shared memory
// (igemm_load_tiles), the block synchronises, every thread multiplies its TM x TN
// micro-tile (igemm_compute), and synchronises again; finally every thread writes
// its micro-tile (igemm_store).  The kernel is these phases separated by
// __syncthreads(); the host harness runs the same phases for every thread in turn,
// which is equivalent because each phase only reads what the previous phase wrote.
#pragma once

#include "kb_common.cuh"

template <int BM, int BN, int BK, int TM, int TN>
struct IgemmShape {
    static_assert(BM % TM == 0 && BN % TN == 0, "tile must be a multiple of the micro-tile");
    static constexpr int kRowsPerStep = BM / TM;  // threads along M
    static constexpr int kThreads = (BM / TM) * (BN / TN);
};

// A[m, kk] of group g: the input value under filter tap kk for output pixel m (0 for padding / past the end).
template <typename T>
KB_HD float igemm_a_value(const ConvParams& p, const T* x, int g, int m, int kk) {
    if (m >= p.gemm_m() || kk >= p.gemm_k()) {
        return 0.0f;
    }
    const int ow = m % p.out_w;
    const int oh = (m / p.out_w) % p.out_h;
    const int image = m / (p.out_w * p.out_h);
    const int s = kk % p.s;
    const int r = (kk / p.s) % p.r;
    const int ci = kk / (p.s * p.r);
    const int ih = oh * p.stride_h - p.pad_h + r * p.dil_h;
    const int iw = ow * p.stride_w - p.pad_w + s * p.dil_w;
    if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) {
        return 0.0f;
    }
    return kb_load(x, ((image * p.c + g * p.group_in_channels() + ci) * p.h + ih) * p.w + iw);
}

// B[kk, n] of group g: filter (g * K/groups + n) at tap kk; the filter is (K, C/groups, R, S) contiguous.
template <typename T>
KB_HD float igemm_b_value(const ConvParams& p, const T* w, int g, int n, int kk) {
    if (n >= p.gemm_n() || kk >= p.gemm_k()) {
        return 0.0f;
    }
    return kb_load(w, (g * p.gemm_n() + n) * p.gemm_k() + kk);
}

// Index of Y[m, n] of group g in the NCHW output.
KB_HD int igemm_y_index(const ConvParams& p, int g, int m, int n) {
    const int pixels = p.out_h * p.out_w;
    const int image = m / pixels;
    return (image * p.k + g * p.gemm_n() + n) * pixels + m % pixels;
}

// Phase 1: this thread's share of the A tile As[BK][BM] and the B tile Bs[BK][BN] at depth k_begin.
// Consecutive threads read consecutive m (A) and consecutive kk (B): both are contiguous in memory.
template <typename T, int BM, int BN, int BK, int TM, int TN>
KB_HD void igemm_load_tiles(const ConvParams& p, const T* x, const T* w, KbDim3 block, int tid, int k_begin,
                            float* As, float* Bs) {
    const int threads = IgemmShape<BM, BN, BK, TM, TN>::kThreads;
    const int m0 = block.x * BM;
    const int n0 = block.y * BN;
    for (int i = tid; i < BK * BM; i += threads) {
        const int kk = i / BM;
        const int mm = i % BM;
        As[kk * BM + mm] = igemm_a_value(p, x, block.z, m0 + mm, k_begin + kk);
    }
    for (int i = tid; i < BK * BN; i += threads) {
        const int kk = i % BK;
        const int nn = i / BK;
        Bs[kk * BN + nn] = igemm_b_value(p, w, block.z, n0 + nn, k_begin + kk);
    }
}

// Phase 2: acc += As^T Bs restricted to this thread's micro-tile.  Rows are strided by BM/TM
// (columns by BN/TN) so a warp reads consecutive shared-memory words.
template <int BM, int BN, int BK, int TM, int TN>
KB_HD void igemm_compute(const float* As, const float* Bs, int tid, float (&acc)[TM][TN]) {
    const int rows = BM / TM;
    const int cols = BN / TN;
    const int tm = tid % rows;
    const int tn = tid / rows;
    for (int kk = 0; kk < BK; ++kk) {
        float a[TM];
        float b[TN];
        for (int i = 0; i < TM; ++i) {
            a[i] = As[kk * BM + tm + i * rows];
        }
        for (int j = 0; j < TN; ++j) {
            b[j] = Bs[kk * BN + tn + j * cols];
        }
        for (int i = 0; i < TM; ++i) {
            for (int j = 0; j < TN; ++j) {
                acc[i][j] += a[i] * b[j];
            }
        }
    }
}

// Phase 3: write this thread's micro-tile (skipping rows / columns past the matrix edge).
template <typename T, int BM, int BN, int BK, int TM, int TN>
KB_HD void igemm_store(const ConvParams& p, T* y, KbDim3 block, int tid, const float (&acc)[TM][TN]) {
    const int rows = BM / TM;
    const int cols = BN / TN;
    const int tm = tid % rows;
    const int tn = tid / rows;
    for (int i = 0; i < TM; ++i) {
        const int m = block.x * BM + tm + i * rows;
        if (m >= p.gemm_m()) {
            continue;
        }
        for (int j = 0; j < TN; ++j) {
            const int n = block.y * BN + tn + j * cols;
            if (n < p.gemm_n()) {
                kb_store(y, igemm_y_index(p, block.z, m, n), acc[i][j]);
            }
        }
    }
}
