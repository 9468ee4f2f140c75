// Host harness: runs the __host__ __device__ bodies of the CUDA kernels on the CPU.
//
// Built by tests/kernelbench/test_gpu_harness.py with nvcc; the list of
// instantiations comes from kernelbench.gpu.instances through the generated
// "dispatch.inc" (one KB_ENTRY per name expression).
//
//   harness params  REQ OUT   REQ: int32 parameters     OUT: "name=value" lines (field order check)
//   harness to_half REQ OUT   REQ: float32 values       OUT: uint16 binary16 bits
//   harness to_float REQ OUT  REQ: uint16 bits          OUT: float32 values
//   harness run EXPR REQ OUT  REQ: int32 grid[3], block[3], params[16], then x and w in the kernel's
//                             element type; OUT: y.  Every block and thread of the launch is simulated.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "conv_direct.cuh"
#include "conv_igemm.cuh"

namespace {

constexpr int kParamCount = 0
#define KB_COUNT_FIELD(name) +1
    KB_PARAM_FIELDS(KB_COUNT_FIELD)
#undef KB_COUNT_FIELD
    ;

std::vector<char> read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const char* path, const void* data, size_t bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
}

struct Request {
    KbDim3 grid;
    KbDim3 block;
    ConvParams p;
    const char* x;
    const char* w;
};

template <typename T>
std::vector<T> poisoned_output(const ConvParams& p) {
    // NaN everywhere: an output the kernel forgets to write fails the comparison.
    std::vector<T> y(static_cast<size_t>(p.n) * p.k * p.out_h * p.out_w);
    for (size_t i = 0; i < y.size(); ++i) {
        kb_store(y.data(), static_cast<int>(i), __builtin_nanf(""));
    }
    return y;
}

template <typename T, int BH, int BW, int KPT>
std::vector<char> simulate_direct(const Request& q) {
    std::vector<T> y = poisoned_output<T>(q.p);
    const T* x = reinterpret_cast<const T*>(q.x);
    const T* w = reinterpret_cast<const T*>(q.w);
    for (int bz = 0; bz < q.grid.z; ++bz)
        for (int by = 0; by < q.grid.y; ++by)
            for (int bx = 0; bx < q.grid.x; ++bx)
                for (int tz = 0; tz < q.block.z; ++tz)
                    for (int ty = 0; ty < q.block.y; ++ty)
                        for (int tx = 0; tx < q.block.x; ++tx)
                            direct_thread<T, BH, BW, KPT>(q.p, x, w, y.data(), {bx, by, bz}, {tx, ty, tz});
    const char* bytes = reinterpret_cast<const char*>(y.data());
    return std::vector<char>(bytes, bytes + y.size() * sizeof(T));
}

template <typename T, int BM, int BN, int BK, int TM, int TN>
std::vector<char> simulate_igemm(const Request& q) {
    struct Acc {
        float v[TM][TN];
    };
    const int threads = IgemmShape<BM, BN, BK, TM, TN>::kThreads;
    if (q.block.x != threads || q.block.y != 1 || q.block.z != 1) {
        std::fprintf(stderr, "block (%d,%d,%d) does not match %d threads\n", q.block.x, q.block.y, q.block.z, threads);
        std::exit(3);
    }
    std::vector<T> y = poisoned_output<T>(q.p);
    const T* x = reinterpret_cast<const T*>(q.x);
    const T* w = reinterpret_cast<const T*>(q.w);
    std::vector<float> As(BK * BM);
    std::vector<float> Bs(BK * BN);
    std::vector<Acc> acc(threads);
    for (int bz = 0; bz < q.grid.z; ++bz)
        for (int by = 0; by < q.grid.y; ++by)
            for (int bx = 0; bx < q.grid.x; ++bx) {
                const KbDim3 block = {bx, by, bz};
                for (Acc& a : acc) std::memset(a.v, 0, sizeof a.v);
                // Each loop over tid is one phase between two __syncthreads() of the kernel.
                for (int k_begin = 0; k_begin < q.p.gemm_k(); k_begin += BK) {
                    for (int tid = 0; tid < threads; ++tid)
                        igemm_load_tiles<T, BM, BN, BK, TM, TN>(q.p, x, w, block, tid, k_begin, As.data(), Bs.data());
                    for (int tid = 0; tid < threads; ++tid)
                        igemm_compute<BM, BN, BK, TM, TN>(As.data(), Bs.data(), tid, acc[tid].v);
                }
                for (int tid = 0; tid < threads; ++tid)
                    igemm_store<T, BM, BN, BK, TM, TN>(q.p, y.data(), block, tid, acc[tid].v);
            }
    const char* bytes = reinterpret_cast<const char*>(y.data());
    return std::vector<char>(bytes, bytes + y.size() * sizeof(T));
}

// The simulate_* counterpart of every runtime name expression.
using Simulator = std::vector<char> (*)(const Request&);
const std::map<std::string, Simulator>& simulators() {
    static const std::map<std::string, Simulator> table = {
#define KB_ENTRY(expr, simulator) {expr, &simulator},
#include "dispatch.inc"
#undef KB_ENTRY
    };
    return table;
}

size_t input_elements(const ConvParams& p) { return static_cast<size_t>(p.n) * p.c * p.h * p.w; }
size_t filter_elements(const ConvParams& p) { return static_cast<size_t>(p.k) * p.group_in_channels() * p.r * p.s; }

int run(const char* expr, const char* req_path, const char* out_path) {
    const auto found = simulators().find(expr);
    if (found == simulators().end()) {
        std::fprintf(stderr, "unknown instantiation: %s\n", expr);
        return 2;
    }
    const std::vector<char> req = read_file(req_path);
    const int* head = reinterpret_cast<const int*>(req.data());
    Request q;
    q.grid = {head[0], head[1], head[2]};
    q.block = {head[3], head[4], head[5]};
    q.p = kb_load_params(head + 6);
    const size_t element = std::string(expr).find("kb_half") != std::string::npos ? sizeof(kb_half) : sizeof(float);
    const size_t x_bytes = input_elements(q.p) * element;
    const size_t w_bytes = filter_elements(q.p) * element;
    const size_t offset = (6 + kParamCount) * sizeof(int);
    if (req.size() != offset + x_bytes + w_bytes) {
        std::fprintf(stderr, "request has %zu bytes, expected %zu\n", req.size(), offset + x_bytes + w_bytes);
        return 2;
    }
    q.x = req.data() + offset;
    q.w = q.x + x_bytes;
    const std::vector<char> y = found->second(q);
    write_file(out_path, y.data(), y.size());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "params" && argc == 4) {
        const std::vector<char> req = read_file(argv[2]);
        const ConvParams p = kb_load_params(reinterpret_cast<const int*>(req.data()));
        std::string text;
#define KB_PRINT_FIELD(name) text += std::string(#name) + "=" + std::to_string(p.name) + "\n";
        KB_PARAM_FIELDS(KB_PRINT_FIELD)
#undef KB_PRINT_FIELD
        write_file(argv[3], text.data(), text.size());
        return 0;
    }
    if (mode == "to_half" && argc == 4) {
        const std::vector<char> req = read_file(argv[2]);
        std::vector<unsigned short> out(req.size() / sizeof(float));
        for (size_t i = 0; i < out.size(); ++i) {
            float f;
            std::memcpy(&f, req.data() + i * sizeof f, sizeof f);
            out[i] = kb_float_to_half(f);
        }
        write_file(argv[3], out.data(), out.size() * sizeof(unsigned short));
        return 0;
    }
    if (mode == "to_float" && argc == 4) {
        const std::vector<char> req = read_file(argv[2]);
        std::vector<float> out(req.size() / sizeof(unsigned short));
        for (size_t i = 0; i < out.size(); ++i) {
            unsigned short h;
            std::memcpy(&h, req.data() + i * sizeof h, sizeof h);
            out[i] = kb_half_to_float(h);
        }
        write_file(argv[3], out.data(), out.size() * sizeof(float));
        return 0;
    }
    if (mode == "run" && argc == 5) {
        return run(argv[2], argv[3], argv[4]);
    }
    std::fprintf(stderr, "usage: harness params|to_half|to_float REQ OUT  |  harness run EXPR REQ OUT\n");
    return 2;
}
