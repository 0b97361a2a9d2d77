// Memory bandwidth of one CUDA device: cudaMemcpy device-to-device between two buffers,
// timed with CUDA events. Run by `mesh-llm gpu benchmark` (services/worker/gpu_bench.py),
// which builds it with nvcc and picks the device with CUDA_VISIBLE_DEVICES.
//
//   gpu_bandwidth [MIB] [REPETITIONS]    defaults: 1024 MiB per buffer, 20 repetitions
//
// Prints one JSON line. Each copy counts the bytes read plus the bytes written (2 x the
// buffer, as STREAM's copy and CUDA's bandwidthTest do), in GB/s (10^9 bytes per second).
// The buffers shrink to fit when the device has less than 2 x MIB free (with 10 % to spare).
// Errors: one line on stderr, exit status 1.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(call)                                                                   \
    do {                                                                              \
        cudaError_t err_ = (call);                                                    \
        if (err_ != cudaSuccess) {                                                    \
            fprintf(stderr, "gpu_bandwidth: %s: %s\n", #call, cudaGetErrorString(err_)); \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoull(argv[1], nullptr, 10) : 1024;
    int repetitions = argc > 2 ? atoi(argv[2]) : 20;
    if (mib == 0 || repetitions < 1) {
        fprintf(stderr, "gpu_bandwidth: usage: gpu_bandwidth [MIB > 0] [REPETITIONS > 0]\n");
        return 1;
    }

    CHECK(cudaSetDevice(0));
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    char pci[32];
    CHECK(cudaDeviceGetPCIBusId(pci, sizeof pci, 0));
    size_t free_bytes = 0, total_bytes = 0;
    CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));

    size_t bytes = mib << 20;
    size_t room = (size_t)(free_bytes * 0.9) / 2;
    if (bytes > room) bytes = room & ~(size_t)((1 << 20) - 1);  // whole MiB
    if (bytes == 0) {
        fprintf(stderr, "gpu_bandwidth: too little free memory (%zu bytes)\n", free_bytes);
        return 1;
    }

    void *src = nullptr, *dst = nullptr;
    CHECK(cudaMalloc(&src, bytes));
    CHECK(cudaMalloc(&dst, bytes));
    CHECK(cudaMemset(src, 1, bytes));
    CHECK(cudaMemset(dst, 0, bytes));
    CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));  // warm-up
    CHECK(cudaDeviceSynchronize());

    cudaEvent_t start, stop;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
    std::vector<double> gbps;
    for (int i = 0; i < repetitions; i++) {
        CHECK(cudaEventRecord(start));
        CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
        CHECK(cudaEventRecord(stop));
        CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        CHECK(cudaEventElapsedTime(&ms, start, stop));
        gbps.push_back(2.0 * (double)bytes / (ms / 1e3) / 1e9);
    }
    std::sort(gbps.begin(), gbps.end());
    double best = gbps.back();
    double median = repetitions % 2 ? gbps[repetitions / 2]
                                    : (gbps[repetitions / 2 - 1] + gbps[repetitions / 2]) / 2;

    int runtime = 0, driver = 0;
    CHECK(cudaRuntimeGetVersion(&runtime));
    CHECK(cudaDriverGetVersion(&driver));
    printf("{\"name\": \"%s\", \"pci_bus_id\": \"%s\", \"memory_total_bytes\": %zu, "
           "\"bytes\": %zu, \"repetitions\": %d, \"best_gbps\": %.3f, \"median_gbps\": %.3f, "
           "\"cuda_runtime\": %d, \"cuda_driver\": %d}\n",
           prop.name, pci, total_bytes, bytes, repetitions, best, median, runtime, driver);

    CHECK(cudaEventDestroy(start));
    CHECK(cudaEventDestroy(stop));
    CHECK(cudaFree(src));
    CHECK(cudaFree(dst));
    return 0;
}
