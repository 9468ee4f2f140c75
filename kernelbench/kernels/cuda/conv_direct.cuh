// Direct NCHW convolution: what one thread computes.
//
// Launch (kernelbench.gpu.launch.direct_launch): block = (BW, BH, 1) threads,
// grid = (ceil(OH/BH) * ceil(OW/BW), ceil(K/KPT), N).  A thread owns one output
// pixel (oh, ow) of image n and KPT consecutive output channels, so each input
// value it loads is reused KPT times.  KPT must divide K/groups (applicability
// rule), so a thread's channels never straddle two groups.
#pragma once

#include "kb_common.cuh"

// Accumulates the KPT outputs y[n, k0 .. k0+KPT-1, oh, ow] into acc (float).
template <typename T, int KPT>
KB_HD void direct_accumulate(const ConvParams& p, const T* x, const T* w, int n, int k0, int oh, int ow,
                             float (&acc)[KPT]) {
    const int cg = p.group_in_channels();
    const int group = k0 / p.group_out_channels();
    for (int j = 0; j < KPT; ++j) {
        acc[j] = 0.0f;
    }
    for (int ci = 0; ci < cg; ++ci) {
        const int x_plane = (n * p.c + group * cg + ci) * p.h;
        for (int r = 0; r < p.r; ++r) {
            const int ih = oh * p.stride_h - p.pad_h + r * p.dil_h;
            if (ih < 0 || ih >= p.h) {
                continue;
            }
            for (int s = 0; s < p.s; ++s) {
                const int iw = ow * p.stride_w - p.pad_w + s * p.dil_w;
                if (iw < 0 || iw >= p.w) {
                    continue;
                }
                const float xv = kb_load(x, (x_plane + ih) * p.w + iw);
                for (int j = 0; j < KPT; ++j) {
                    if (k0 + j < p.k) {
                        acc[j] += xv * kb_load(w, (((k0 + j) * cg + ci) * p.r + r) * p.s + s);
                    }
                }
            }
        }
    }
}

// The whole body of one thread of conv_direct<T, BH, BW, KPT>.
template <typename T, int BH, int BW, int KPT>
KB_HD void direct_thread(const ConvParams& p, const T* x, const T* w, T* y, KbDim3 block, KbDim3 thread) {
    const int tiles_w = kb_ceil_div(p.out_w, BW);
    const int oh = (block.x / tiles_w) * BH + thread.y;
    const int ow = (block.x % tiles_w) * BW + thread.x;
    const int k0 = block.y * KPT;
    const int n = block.z;
    if (oh >= p.out_h || ow >= p.out_w || k0 >= p.k || n >= p.n) {
        return;
    }
    float acc[KPT];
    direct_accumulate<T, KPT>(p, x, w, n, k0, oh, ow, acc);
    for (int j = 0; j < KPT; ++j) {
        if (k0 + j < p.k) {
            kb_store(y, ((n * p.k + k0 + j) * p.out_h + oh) * p.out_w + ow, acc[j]);
        }
    }
}
