/* float16 / bfloat16 arguments: CUDA's types and conversions (the host
   emulation header defines the few that the kernels use). */
#ifndef KS_EMULATION
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif
