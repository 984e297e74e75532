/* kernelsolve GPU preamble (codegen/dialect.py: CUDA.preamble): fixed-width
   integers and INFINITY / NAN under NVRTC (no standard headers there), and
   the dynamic shared-memory declaration, which the host emulation
   (backends/cuda_emulation.h, KS_EMULATION) defines its own way. */
#if defined(__CUDACC_RTC__)
typedef long long int64_t;
typedef int int32_t;
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
#else
#include <stdint.h>
#include <math.h>
#endif
#ifndef KS_EMULATION
#define KS_DYNAMIC_SHARED(T, name) \
  extern __shared__ __align__(16) unsigned char ks_smem[]; T* name = (T*)ks_smem
#endif
