// Direct NCHW convolution kernel; the per-thread body is direct_thread (conv_direct.cuh).
// Instantiated through kernelbench.gpu.instances.DIRECT_CONFIGS (name expressions).
#include "conv_direct.cuh"

template <typename T, int BH, int BW, int KPT>
__global__ void conv_direct(const T* __restrict__ x, const T* __restrict__ w,
                                                       T* __restrict__ y, const int* __restrict__ packed) {
    const ConvParams p = kb_load_params(packed);
    const KbDim3 block = {(int)blockIdx.x, (int)blockIdx.y, (int)blockIdx.z};
    const KbDim3 thread = {(int)threadIdx.x, (int)threadIdx.y, (int)threadIdx.z};
    direct_thread<T, BH, BW, KPT>(p, x, w, y, block, thread);
}
