/* runtime.h - process start-up: the environment OpenBLAS and OpenMP read at load time. */
#ifndef SDC_RUNTIME_H
#define SDC_RUNTIME_H

/* The libraries read their settings when they load, so they must be in the
 * environment before exec: when unset, this sets OPENBLAS_CORETYPE (Debian's
 * OpenBLAS 0.3.21 does not recognise recent x86 cores and silently falls back
 * to a generic kernel about 5x slower; SkylakeX with AVX-512, Haswell with
 * AVX2) and OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads must not spin on the
 * cores OpenBLAS is using), then re-execs this program once. A user's own
 * settings always win; SDC_NO_REEXEC=1 turns this off. Returns only when no
 * re-exec happened. */
void sdc_runtime_init(char **argv);

#endif
