/* The part of the C math library that kernelsolve's CPU kernels call,
   declared here instead of included: in C++, <math.h> pulls in <cmath>, whose
   parsing was a quarter of every kernel's compile time (0.40 s -> 0.31 s on
   the Xeon of 2026-12-06); the test suite compiles two thousand kernels from
   an empty cache. GCC and clang know these functions by name (builtins:
   sqrt becomes one instruction under -fno-math-errno), exactly as when
   <math.h> declares them. Generated code may only call what is declared
   here: tests/test_ops.py compiles and checks every op in float and double. */
#define INFINITY (__builtin_inff())
#define NAN (__builtin_nanf(""))
#define isinf(x) __builtin_isinf(x)
extern "C" {
double fabs(double) noexcept;
float fabsf(float) noexcept;
double exp(double) noexcept;
float expf(float) noexcept;
double log(double) noexcept;
float logf(float) noexcept;
double sin(double) noexcept;
float sinf(float) noexcept;
double cos(double) noexcept;
float cosf(float) noexcept;
double tan(double) noexcept;
float tanf(float) noexcept;
double asin(double) noexcept;
float asinf(float) noexcept;
double acos(double) noexcept;
float acosf(float) noexcept;
double atan(double) noexcept;
float atanf(float) noexcept;
double sinh(double) noexcept;
float sinhf(float) noexcept;
double cosh(double) noexcept;
float coshf(float) noexcept;
double tanh(double) noexcept;
float tanhf(float) noexcept;
double sqrt(double) noexcept;
float sqrtf(float) noexcept;
double floor(double) noexcept;
float floorf(float) noexcept;
double nearbyint(double) noexcept;
float nearbyintf(float) noexcept;
double pow(double, double) noexcept;
float powf(float, float) noexcept;
double atan2(double, double) noexcept;
float atan2f(float, float) noexcept;
}
