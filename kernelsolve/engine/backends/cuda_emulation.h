// Host emulation of the CUDA features the generated kernels use: each CUDA
// thread is an OS thread, __syncthreads() a std::barrier, the blocks of a
// grid run one after another, and shared memory is one static buffer. This
// is only as faithful as the kernels are simple: shared memory + barriers,
// no warp intrinsics, no atomics (codegen.render_cuda keeps to that).
#pragma once
#define KS_EMULATION 1
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <barrier>
#include <thread>
#include <vector>

struct ks_dim3 { unsigned int x = 1, y = 1, z = 1; };
static thread_local ks_dim3 threadIdx, blockIdx;
static ks_dim3 blockDim, gridDim;
static std::barrier<>* ks_emu_barrier = nullptr;
static unsigned char* ks_emu_smem = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n)
#define __syncthreads() ks_emu_barrier->arrive_and_wait()
#define KS_DYNAMIC_SHARED(T, name) T* name = (T*)ks_emu_smem

template <class F>
static void ks_emu_launch(unsigned gx, unsigned gy, unsigned bx, size_t smem, F body) {
  std::vector<unsigned char> shared(smem + 64);
  ks_emu_smem = shared.data();
  blockDim = ks_dim3{bx, 1, 1};
  gridDim = ks_dim3{gx, gy, 1};
  for (unsigned by = 0; by < gy; by++) {
    for (unsigned bxi = 0; bxi < gx; bxi++) {
      // Garbage in shared memory, as on a GPU: a kernel that reads a slot
      // it did not stage shows up as a wrong result, not a lucky zero.
      memset(shared.data(), 0x7f, shared.size());
      std::barrier<> bar(bx);
      ks_emu_barrier = &bar;
      std::vector<std::thread> threads;
      threads.reserve(bx);
      for (unsigned t = 0; t < bx; t++) {
        threads.emplace_back([=] {
          threadIdx = ks_dim3{t, 0, 0};
          blockIdx = ks_dim3{bxi, by, 0};
          body();
        });
      }
      for (auto& th : threads) th.join();
    }
  }
}
