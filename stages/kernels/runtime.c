/* runtime.c - set the environment the numeric libraries read at load time, then re-exec once. */
#include "runtime.h"

#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

void sdc_runtime_init(char **argv) {
  /* Weights are widened, packed and the widening freed, megabytes at a time:
   * with glibc's adaptive threshold those frees stay in the heap and in the
   * resident set; a fixed threshold keeps big blocks mmapped, so a free
   * returns them to the system. */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  if (getenv("SDC_NO_REEXEC")) return;
  int changed = 0;
  if (!getenv("OPENBLAS_CORETYPE")) {
    const char *core = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
      core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      core = "Haswell";
    if (core) setenv("OPENBLAS_CORETYPE", core, 1), changed = 1;
  }
  /* OpenMP's idle threads must not spin on the cores OpenBLAS is about to use */
  if (!getenv("OMP_WAIT_POLICY")) setenv("OMP_WAIT_POLICY", "PASSIVE", 1), changed = 1;
  if (!changed) return;
  setenv("SDC_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  /* exec failed: carry on with the libraries' own choices */
}
