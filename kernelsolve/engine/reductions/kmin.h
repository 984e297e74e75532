/* Does (v, jv) rank before (u, ju) in a K-min list? NaN ranks after every
   number (as np.sort), ties go to the smaller index, ju < 0 is an empty slot
   (ranks after everything), jv < 0 never ranks before anything. */
#define KS_KMIN_BEFORE(v, jv, u, ju) ((jv) >= 0 && ((ju) < 0 || (v) < (u) || \
    ((u) != (u) && (v) == (v)) || \
    (((v) == (u) || ((v) != (v) && (u) != (u))) && (jv) < (ju))))
