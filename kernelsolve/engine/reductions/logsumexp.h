/* Log-sum-exp accumulators (m, s) hold the sum s * exp(m), m the largest
   finite value seen (-inf if none). LSE_MUL / LSE_SCALE leave 0, inf and NaN
   sums untouched, so that no inf - inf or 0 * inf is ever formed from a
   shift. The sums carry compensation terms (codegen/summation.py), scaled
   with them: a compensation is finite, and non-zero only when m is finite. */
#define LSE_MUL(s, e) (((s) == 0 || isinf(s)) ? (s) : (s) * (e))
#define LSE_SCALE(s, d) LSE_MUL(s, exp(d))
#define LSE_FINAL(m, s) ((m) == -INFINITY ? log(s) : (m) + log(s))
