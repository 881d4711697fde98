/* runtime.h - process start-up: make OpenBLAS pick a real kernel for this CPU. */
#ifndef SDC_RUNTIME_H
#define SDC_RUNTIME_H

/* Debian's OpenBLAS 0.3.21 does not recognise newer x86 cores and silently
 * falls back to a generic kernel about 5x slower. It reads OPENBLAS_CORETYPE
 * when the library loads, so the fix has to happen before exec: when the
 * variable is unset, pick the best kernel family the CPU supports (SkylakeX
 * for AVX-512, Haswell for AVX2) and re-exec this program once. A user's own
 * OPENBLAS_CORETYPE always wins; SDC_NO_REEXEC=1 turns this off. Returns only
 * when no re-exec happened. */
void sdc_runtime_init(char **argv);

#endif
