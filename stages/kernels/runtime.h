/* runtime.h - process start-up: the environment OpenBLAS and OpenMP read at load time. */
#ifndef SDC_RUNTIME_H
#define SDC_RUNTIME_H

/* Checks SDC_ISA and SDC_GEMM (a bad value: one line on stderr naming it,
 * exit 2). The libraries read their settings when they load, so they must
 * be in the environment before exec: this sets OPENBLAS_CORETYPE when unset
 * (SkylakeX with AVX-512, Haswell with AVX2: Debian's OpenBLAS 0.3.21 does
 * not recognise recent x86 cores) or when it names a kernel above the
 * SDC_ISA cap, and OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads must not
 * spin on the cores OpenBLAS is using), then re-execs this program once. A
 * user's own settings within the cap always win; SDC_NO_REEXEC=1 turns the
 * re-exec off. Returns only when no re-exec happened. */
void sdc_runtime_init(char **argv);

#endif
