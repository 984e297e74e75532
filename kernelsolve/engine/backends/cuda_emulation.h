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

// float16 / bfloat16: the storage types and the conversions the kernels use,
// bit-exact with CUDA's: round to nearest even, subnormals, inf and NaN
// (NaN becomes the canonical quiet NaN, as __float2half_rn does).
static inline unsigned short ks_emu_f2h(float f) {
  const uint32_t x = __builtin_bit_cast(uint32_t, f);
  const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (unsigned short)(sign | 0x7fffu);  // NaN
  if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // >= 65520: inf
  if (ax < 0x38800000u) {  // below 2^-14: a subnormal (or zero) half, m * 2^-24
    const float m = nearbyintf(__builtin_bit_cast(float, ax) * 16777216.0f);  // exact scaling
    return (unsigned short)(sign | (uint32_t)m);  // m == 1024 is 2^-14, encoded right
  }
  uint32_t h = ((((ax >> 23) - 112u) << 10) | ((ax >> 13) & 0x3ffu));
  const uint32_t rest = ax & 0x1fffu;  // the 13 bits dropped
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;  // a carry may raise the exponent
  return (unsigned short)(sign | h);
}

static inline float ks_emu_h2f(unsigned short h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = (float)m * 5.9604644775390625e-08f;  // m * 2^-24, exact
    return sign ? -v : v;
  }
  if (e == 31) return __builtin_bit_cast(float, sign | 0x7f800000u | (m << 13));
  return __builtin_bit_cast(float, sign | ((e + 112u) << 23) | (m << 13));
}

static inline unsigned short ks_emu_f2bf(float f) {
  const uint32_t x = __builtin_bit_cast(uint32_t, f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)(((x >> 16) & 0x8000u) | 0x7fffu);
  return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

struct __half {
  unsigned short __x;
  __half() = default;
  __half(float f) : __x(ks_emu_f2h(f)) {}
  // CUDA rounds a double once, directly to half; via float it can round twice
  // (only for values within 2^-37 relative of a half tie; the kernels convert
  // from double only with dtype_acc float64)
  __half(double d) : __x(ks_emu_f2h((float)d)) {}
};
struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(ks_emu_f2bf(f)) {}
  __nv_bfloat16(double d) : __x(ks_emu_f2bf((float)d)) {}
};
static inline float __half2float(__half h) { return ks_emu_h2f(h.__x); }
static inline __half __float2half_rn(float f) { return __half(f); }
static inline float __bfloat162float(__nv_bfloat16 b) {
  return __builtin_bit_cast(float, (uint32_t)b.__x << 16);
}
static inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }

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
