// Implicit-GEMM convolution kernel; the phases live in conv_igemm.cuh.
// Instantiated through kernelbench.gpu.instances.IGEMM_CONFIGS (name expressions).
#include "conv_igemm.cuh"

template <typename T, int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    conv_igemm(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, const int* __restrict__ packed) {
    // Tiles are kept in float whatever T is: loads convert once, the inner loop never does.
    __shared__ float As[BK * BM];
    __shared__ float Bs[BK * BN];
    const ConvParams p = kb_load_params(packed);
    const KbDim3 block = {(int)blockIdx.x, (int)blockIdx.y, (int)blockIdx.z};
    const int tid = (int)threadIdx.x;
    float acc[TM][TN];
    for (int i = 0; i < TM; ++i) {
        for (int j = 0; j < TN; ++j) {
            acc[i][j] = 0.0f;
        }
    }
    for (int k_begin = 0; k_begin < p.gemm_k(); k_begin += BK) {
        igemm_load_tiles<T, BM, BN, BK, TM, TN>(p, x, w, block, tid, k_begin, As, Bs);
        __syncthreads();
        igemm_compute<BM, BN, BK, TM, TN>(As, Bs, tid, acc);
        __syncthreads();
    }
    igemm_store<T, BM, BN, BK, TM, TN>(p, y, block, tid, acc);
}
