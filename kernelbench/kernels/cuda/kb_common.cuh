// Shared definitions of the hand-written convolution kernels.
//
// Everything here is __host__ __device__ so the host harness
// (tests/kernelbench/cuda_harness) can run the exact code the GPU runs.
// The sources compile under NVRTC (CuPy's RawModule) and nvcc alike, so they
// include no CUDA or C++ library headers on the device path: NVRTC ships
// neither <cstring> nor, without extra include paths, <cuda_fp16.h>.
#pragma once

#if !defined(__CUDACC_RTC__)
#include <cstring>
#endif

#define KB_HD __host__ __device__ __forceinline__

// The convolution parameters, packed by kernelbench.gpu.launch.pack_params into
// an int32 array in exactly this order (the host harness checks the order).
#define KB_PARAM_FIELDS(X) \
    X(n) X(c) X(h) X(w) X(k) X(r) X(s) X(pad_h) X(pad_w) X(stride_h) X(stride_w) \
    X(dil_h) X(dil_w) X(groups) X(out_h) X(out_w)

struct ConvParams {
#define KB_DECLARE_FIELD(name) int name;
    KB_PARAM_FIELDS(KB_DECLARE_FIELD)
#undef KB_DECLARE_FIELD

    KB_HD int group_in_channels() const { return c / groups; }
    KB_HD int group_out_channels() const { return k / groups; }
    // The implicit-GEMM sizes of one group: M output pixels, N filters, K reduction.
    KB_HD int gemm_m() const { return n * out_h * out_w; }
    KB_HD int gemm_n() const { return k / groups; }
    KB_HD int gemm_k() const { return (c / groups) * r * s; }
};

KB_HD ConvParams kb_load_params(const int* packed) {
    ConvParams p;
    int i = 0;
#define KB_LOAD_FIELD(name) p.name = packed[i++];
    KB_PARAM_FIELDS(KB_LOAD_FIELD)
#undef KB_LOAD_FIELD
    return p;
}

// Block / thread coordinates as plain ints, so host code can pass them too.
struct KbDim3 {
    int x, y, z;
};

// IEEE binary16 storage.  Arithmetic is always done in float; only loads and
// stores convert.  The device converts with the cvt instruction (round to
// nearest even); the host path below implements the same rounding and is
// checked bit for bit against numpy.float16 by the host harness test.
struct alignas(2) kb_half {
    unsigned short bits;
};

KB_HD float kb_half_to_float(unsigned short h) {
#if defined(__CUDA_ARCH__)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    const unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
    const unsigned int exponent = (h >> 10) & 0x1fu;
    const unsigned int mantissa = h & 0x3ffu;
    unsigned int bits;
    if (exponent == 0) {
        // Zero or subnormal: mantissa * 2^-24 is exact in float.
        float magnitude = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

KB_HD unsigned short kb_float_to_half(float f) {
#if defined(__CUDA_ARCH__)
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    unsigned int x;
    memcpy(&x, &f, sizeof x);
    const unsigned int sign = (x >> 16) & 0x8000u;
    const unsigned int magnitude = x & 0x7fffffffu;
    if (magnitude >= 0x7f800000u) {  // inf or nan (nan stays quiet)
        return (unsigned short)(sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u : 0u));
    }
    if (magnitude >= 0x477ff000u) {  // >= 65520 rounds to inf
        return (unsigned short)(sign | 0x7c00u);
    }
    if (magnitude < 0x38800000u) {  // below 2^-14: half subnormal (or zero)
        if (magnitude < 0x33000000u) {  // below 2^-25: rounds to zero
            return (unsigned short)sign;
        }
        const unsigned int exponent = magnitude >> 23;
        const unsigned int mantissa = (magnitude & 0x7fffffu) | 0x800000u;
        const unsigned int shift = 126u - exponent;  // 14..24
        unsigned int q = mantissa >> shift;
        const unsigned int rest = mantissa & ((1u << shift) - 1u);
        const unsigned int halfway = 1u << (shift - 1u);
        if (rest > halfway || (rest == halfway && (q & 1u))) {
            ++q;
        }
        return (unsigned short)(sign | q);
    }
    // Normal: rebias the exponent (127 -> 15) and round 23 -> 10 mantissa bits.
    unsigned int rebased = magnitude - 0x38000000u;
    rebased += 0xfffu + ((rebased >> 13) & 1u);
    return (unsigned short)(sign | (rebased >> 13));
#endif
}

KB_HD float kb_load(const float* p, int i) { return p[i]; }
KB_HD float kb_load(const kb_half* p, int i) { return kb_half_to_float(p[i].bits); }
KB_HD void kb_store(float* p, int i, float v) { p[i] = v; }
KB_HD void kb_store(kb_half* p, int i, float v) { p[i].bits = kb_float_to_half(v); }

KB_HD int kb_ceil_div(int a, int b) { return (a + b - 1) / b; }
