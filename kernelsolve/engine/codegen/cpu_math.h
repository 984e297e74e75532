/* kernelsolve CPU math, pasted into every CPU kernel (codegen/cpu.py).

   ks_exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln 2 / 2, with a
   polynomial for exp(r) (float: 1.3 ulp, double: 1 ulp, measured over the
   whole range). Branch-free, so GCC vectorizes it inside `omp simd` loops;
   2^n is applied as two factors so that results near the underflow are
   right (subnormal ones are then flushed to 0 by ks_flush_guard); the
   selects at the end give exactly 0 below the range, +inf above it, and NaN
   for NaN. Why not -ffast-math: it lets the compiler assume no inf/NaN,
   which logsumexp's -inf start and min's +inf start need. */

/* Results that would be subnormal are flushed to zero (MXCSR's FTZ bit) while
   a kernel runs, and the caller's mode is restored after: x86 cores take a
   microcode assist of ~100 cycles for every subnormal result or operand, and
   kernel values underflow all the time (a float32 Gaussian of points 13-14
   lengthscales apart is subnormal): a product with 6.5% such pairs ran 28x
   slower (measured, Xeon AVX-512, Gaussian on 1e4 DEM points). The error is
   below the smallest normal number (1.2e-38 float32, 2.2e-308 float64) per
   value. Subnormal inputs are still read as they are (no DAZ). */
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
struct ks_flush_guard {
  unsigned int saved;
  ks_flush_guard() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8000u); }
  ~ks_flush_guard() { _mm_setcsr(saved); }
};
#else
struct ks_flush_guard {};
#endif

static inline float ks_exp(float x) {
  float t = x * 1.44269504088896341f + 12582912.0f;
  float n = t - 12582912.0f;
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = __builtin_bit_cast(int32_t, t) - 0x4B400000;
  int32_t e1 = e >> 1, e2 = e - e1;
  float y = p * __builtin_bit_cast(float, (e1 + 127) << 23)
              * __builtin_bit_cast(float, (e2 + 127) << 23);
  y = x < -104.0f ? 0.0f : y;
  y = x > 88.72283935546875f ? INFINITY : y;
  y = x != x ? x : y;
  return y;
}

// x where m is all ones, +0 where m is 0: the mask of the padding columns
// (codegen.CPU_VECTOR_J) as bit operations, not as a select: GCC 12 with
// AVX-512 miscompiled `acc += keep ? v : -0` in the SIMD loop of a formula
// with selects of its own (a gradient with ifelse/clamp).
static inline float ks_keep(float x, int32_t m) {
  return __builtin_bit_cast(float, __builtin_bit_cast(int32_t, x) & m);
}

static inline double ks_keep(double x, int32_t m) {
  return __builtin_bit_cast(double, __builtin_bit_cast(int64_t, x) & (int64_t)m);
}

static inline double ks_exp(double x) {
  double t = x * 1.4426950408889634074 + 6755399441055744.0;
  double n = t - 6755399441055744.0;
  double r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.6059043836821614599e-10;
  p = p * r + 2.0876756987868098979e-9;
  p = p * r + 2.5052108385441718775e-8;
  p = p * r + 2.7557319223985890653e-7;
  p = p * r + 2.7557319223985890653e-6;
  p = p * r + 2.4801587301587301587e-5;
  p = p * r + 1.9841269841269841270e-4;
  p = p * r + 1.3888888888888888889e-3;
  p = p * r + 8.3333333333333333333e-3;
  p = p * r + 4.1666666666666666667e-2;
  p = p * r + 1.6666666666666666667e-1;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  // n = n1 + n2 split in floating point (n1 = round(n / 2) by the same
  // shifter), so that only 64-bit add/sub/shift-left remain: AVX2 has no
  // 64-bit arithmetic right shift, and `e >> 1` kept this loop scalar there
  double t1 = n * 0.5 + 6755399441055744.0;
  double n1 = t1 - 6755399441055744.0;
  double t2 = (n - n1) + 6755399441055744.0;
  int64_t e1 = __builtin_bit_cast(int64_t, t1) - 0x4338000000000000LL;
  int64_t e2 = __builtin_bit_cast(int64_t, t2) - 0x4338000000000000LL;
  double y = p * __builtin_bit_cast(double, (e1 + 1023) << 52)
               * __builtin_bit_cast(double, (e2 + 1023) << 52);
  y = x < -746.0 ? 0.0 : y;
  y = x > 709.782712893384 ? INFINITY : y;
  y = x != x ? x : y;
  return y;
}

/* ks_log(x) = k ln 2 + log(m), x = 2^k m with m in [sqrt(2)/2, sqrt(2)), and
   log(m) = log(1 + f) by the polynomial of FreeBSD's msun (e_logf.c, e_log.c:
   below 1 ulp). Branch-free like ks_exp, so that GCC vectorizes it (libm's log
   keeps a loop scalar: the thin-plate spline ran 4-7x slower than the
   Gaussian). The exponent k is read with a logical shift and made a floating
   value by the magic-number trick (AVX2 has no 64-bit integer conversion);
   subnormal inputs are scaled first. 0 -> -inf, x < 0 -> NaN, +inf -> +inf,
   NaN -> NaN. */
static inline float ks_log(float x) {
  const bool tiny = x < 1.17549435e-38f;
  const float xs = tiny ? x * 33554432.0f : x;
  const uint32_t ux = __builtin_bit_cast(uint32_t, xs);
  float k = __builtin_bit_cast(float, (ux >> 23) | 0x4b000000u) - 8388735.0f;
  k = tiny ? k - 25.0f : k;
  float m = __builtin_bit_cast(float, (ux & 0x007fffffu) | 0x3f800000u);
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  k = big ? k + 1.0f : k;
  const float f = m - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s, w = z * z;
  const float R = z * (6.6666662693e-01f + w * 2.8498786688e-01f)
                + w * (4.0000972152e-01f + w * 2.4279078841e-01f);
  const float hfsq = 0.5f * f * f;
  float y = k * 6.9313812256e-01f - ((hfsq - (s * (hfsq + R) + k * 9.0580006145e-06f)) - f);
  y = x == 0.0f ? -INFINITY : y;
  y = x < 0.0f ? NAN : y;
  y = x == INFINITY ? x : y;
  y = x != x ? x : y;
  return y;
}

static inline double ks_log(double x) {
  const bool tiny = x < 2.2250738585072014e-308;
  const double xs = tiny ? x * 18014398509481984.0 : x;
  const uint64_t ux = __builtin_bit_cast(uint64_t, xs);
  double k = __builtin_bit_cast(double, (ux >> 52) | 0x4330000000000000ULL)
             - 4503599627371519.0;
  k = tiny ? k - 54.0 : k;
  double m = __builtin_bit_cast(double, (ux & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
  const bool big = m > 1.4142135623730951;
  m = big ? m * 0.5 : m;
  k = big ? k + 1.0 : k;
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s, w = z * z;
  const double t1 = w * (3.999999999940941908e-01
                  + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const double t2 = z * (6.666666666666735130e-01
                  + w * (2.857142874366239149e-01
                  + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const double R = t2 + t1;
  const double hfsq = 0.5 * f * f;
  double y = k * 6.93147180369123816490e-01
             - ((hfsq - (s * (hfsq + R) + k * 1.90821492927058770002e-10)) - f);
  y = x == 0.0 ? -INFINITY : y;
  y = x < 0.0 ? NAN : y;
  y = x == INFINITY ? x : y;
  y = x != x ? x : y;
  return y;
}
