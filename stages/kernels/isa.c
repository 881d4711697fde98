/* isa.c - the instruction-set level the kernels run at: detected once, capped by SDC_ISA. */
#include "isa.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "error.h"

#define SDC__ARCH_REQ_XCOMP_PERM 0x1023
#define SDC__XFEATURE_XTILEDATA 18

static const char *const sdc__names[] = {"scalar", "avx2", "avx512", "amx"};

static sdc_isa sdc__host, sdc__env_level;
static int sdc__host_bf16, sdc__forced = -1;
static pthread_once_t sdc__once = PTHREAD_ONCE_INIT;

/* AMX-BF16 and AMX-TILE: CPUID leaf 7, EDX bits 22 and 24; Linux hands out
 * the large tile state only on request. */
static int sdc__amx_probe(void) {
  unsigned a = 7, b = 0, c = 0, d = 0;
  __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
  if (!(d & (1u << 22)) || !(d & (1u << 24))) return 0;
  return syscall(SYS_arch_prctl, SDC__ARCH_REQ_XCOMP_PERM, SDC__XFEATURE_XTILEDATA) == 0;
}

static void sdc__detect(void) {
  __builtin_cpu_init();
  sdc__host = SDC_ISA_SCALAR;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) sdc__host = SDC_ISA_AVX2;
  if (sdc__host == SDC_ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    sdc__host = SDC_ISA_AVX512;
  sdc__host_bf16 = sdc__host == SDC_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
  if (sdc__host_bf16 && sdc__amx_probe()) sdc__host = SDC_ISA_AMX;
  sdc__env_level = sdc__host;
  const char *env = getenv("SDC_ISA");
  sdc_isa cap = SDC_ISA_AMX;
  if (env && *env && sdc_isa_parse(env, &cap) == SDC_OK && cap < sdc__host) sdc__env_level = cap;
}

sdc_isa sdc_isa_host(void) {
  pthread_once(&sdc__once, sdc__detect);
  return sdc__host;
}

sdc_isa sdc_isa_level(void) {
  pthread_once(&sdc__once, sdc__detect);
  if (sdc__forced >= 0 && (sdc_isa)sdc__forced < sdc__host) return (sdc_isa)sdc__forced;
  return sdc__forced >= 0 ? sdc__host : sdc__env_level;
}

int sdc_isa_bf16(void) { return sdc_isa_level() >= SDC_ISA_AVX512 && sdc__host_bf16; }

int sdc_isa_amx(void) { return sdc_isa_level() >= SDC_ISA_AMX; }

const char *sdc_isa_name(sdc_isa isa) { return isa <= SDC_ISA_AMX ? sdc__names[isa] : "?"; }

int sdc_isa_parse(const char *s, sdc_isa *isa) {
  for (int i = 0; i <= SDC_ISA_AMX; i++)
    if (strcmp(s, sdc__names[i]) == 0) return *isa = (sdc_isa)i, SDC_OK;
  return sdc_seterr(SDC_EINVAL, "SDC_ISA='%s': expected scalar, avx2, avx512 or amx", s);
}

int sdc_isa_env_check(void) {
  const char *env = getenv("SDC_ISA");
  sdc_isa cap = SDC_ISA_AMX;
  return env && *env ? sdc_isa_parse(env, &cap) : SDC_OK;
}

void sdc__isa_force(int isa) { sdc__forced = isa; }
