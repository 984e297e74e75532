/* Log-sum-exp accumulators (m, s) hold the sum s * exp(m), m the largest
   finite value seen (-inf if none). LSE_SCALE leaves 0, inf and NaN sums
   untouched, so that no inf - inf or 0 * inf is ever formed from a shift. */
#define LSE_SCALE(s, d) (((s) == 0 || isinf(s)) ? (s) : (s) * exp(d))
#define LSE_FINAL(m, s) ((m) == -INFINITY ? log(s) : (m) + log(s))
