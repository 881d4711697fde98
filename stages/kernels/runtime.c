/* runtime.c - set the environment the numeric libraries read at load time, then re-exec once. */
#include "runtime.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "error.h"
#include "isa.h"
#include "ops.h"

/* OpenBLAS's x86-64 kernels by the ISA level they need (isa.h); a name not
 * here is left alone. */
static const struct {
  const char *name;
  sdc_isa level;
} sdc__cores[] = {
    {"Prescott", SDC_ISA_SCALAR},  {"Core2", SDC_ISA_SCALAR},      {"Penryn", SDC_ISA_SCALAR},
    {"Dunnington", SDC_ISA_SCALAR}, {"Nehalem", SDC_ISA_SCALAR},   {"Atom", SDC_ISA_SCALAR},
    {"Opteron", SDC_ISA_SCALAR},   {"Barcelona", SDC_ISA_SCALAR},  {"Bobcat", SDC_ISA_SCALAR},
    {"Sandybridge", SDC_ISA_SCALAR}, {"Bulldozer", SDC_ISA_SCALAR}, {"Piledriver", SDC_ISA_SCALAR},
    {"Steamroller", SDC_ISA_SCALAR}, {"Excavator", SDC_ISA_AVX2},  {"Haswell", SDC_ISA_AVX2},
    {"Zen", SDC_ISA_AVX2},         {"SkylakeX", SDC_ISA_AVX512},   {"Cooperlake", SDC_ISA_AVX512},
    {"SapphireRapids", SDC_ISA_AVX512},
};
/* The core each level gets when none is set or the one set is above the cap. */
static const char *const sdc__core_for[] = {"Nehalem", "Haswell", "SkylakeX", "SkylakeX"};

static int sdc__core_level(const char *name) {
  for (size_t i = 0; i < sizeof sdc__cores / sizeof *sdc__cores; i++)
    if (strcasecmp(name, sdc__cores[i].name) == 0) return (int)sdc__cores[i].level;
  return -1;
}

void sdc_runtime_init(char **argv) {
  /* Weights are widened, packed and the widening freed, megabytes at a time:
   * with glibc's adaptive threshold those frees stay in the heap and in the
   * resident set; a fixed threshold keeps big blocks mmapped, so a free
   * returns them to the system. */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  int err = sdc_isa_env_check();
  if (!err) err = sdc_gemm_env_check();
  if (err) {
    const char *slash = argv && argv[0] ? strrchr(argv[0], '/') : NULL;
    fprintf(stderr, "%s: %s\n", slash ? slash + 1 : argv && argv[0] ? argv[0] : "sdc", sdc_errmsg(err));
    exit(2);
  }
  if (getenv("SDC_NO_REEXEC")) return;
  int changed = 0;
  /* OpenBLAS: the kernel for this CPU when none is set (Debian's 0.3.21
   * does not recognise recent cores and falls back to a generic kernel about
   * 5x slower), and never one above the SDC_ISA cap; a user's setting within
   * the cap stands. fp32's hot path is on oneDNN (sdc_fp32_gemm), so this
   * matters for attention below AVX-512, LoRA merges and SDC_GEMM=openblas. */
  const sdc_isa level = sdc_isa_level();
  const char *core = getenv("OPENBLAS_CORETYPE");
  const int core_level = core ? sdc__core_level(core) : -1;
  if ((!core && level >= SDC_ISA_AVX2) || (core && level < sdc_isa_host() && core_level > (int)level)) {
    setenv("OPENBLAS_CORETYPE", sdc__core_for[level], 1);
    changed = 1;
  }
  /* OpenMP's idle threads must not spin on the cores OpenBLAS is about to use */
  if (!getenv("OMP_WAIT_POLICY")) setenv("OMP_WAIT_POLICY", "PASSIVE", 1), changed = 1;
  if (!changed) return;
  setenv("SDC_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  /* exec failed: carry on with the libraries' own choices */
}
