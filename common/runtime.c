/* runtime.c - choose OPENBLAS_CORETYPE from the CPU's features and re-exec once. */
#include "runtime.h"

#include <stdlib.h>
#include <unistd.h>

void sdc_runtime_init(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") || getenv("SDC_NO_REEXEC")) return;
  const char *core = NULL;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    core = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    core = "Haswell";
  if (!core) return;
  setenv("OPENBLAS_CORETYPE", core, 1);
  setenv("SDC_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  /* exec failed: carry on with whatever OpenBLAS picked */
}
