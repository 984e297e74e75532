/* b ranks before a (b wins) for min; NaN beats numbers, ties keep the
   smaller index, an index < 0 marks an empty slot. */
#define KS_MIN_BEFORE(vb, ib, va, ia) ((ib) >= 0 && ((ia) < 0 || (vb) < (va) || \
    ((vb) != (vb) && (va) == (va)) || \
    (((vb) == (va) || ((vb) != (vb) && (va) != (va))) && (ib) < (ia))))
#define KS_MAX_BEFORE(vb, ib, va, ia) ((ib) >= 0 && ((ia) < 0 || (vb) > (va) || \
    ((vb) != (vb) && (va) == (va)) || \
    (((vb) == (va) || ((vb) != (vb) && (va) != (va))) && (ib) < (ia))))
