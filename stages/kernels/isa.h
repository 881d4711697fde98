/* isa.h - what the kernels may use: the CPU's instruction sets, capped by SDC_ISA. */
#ifndef SDC_ISA_H
#define SDC_ISA_H

/* Levels, each including the ones below it. scalar: portable C (and the
 * libraries' SSE kernels); avx2: AVX2 + FMA; avx512: AVX-512 F/BW/VL/DQ, with
 * AVX512-BF16 where the CPU has it; amx: AMX-BF16 tiles as well. */
typedef enum { SDC_ISA_SCALAR, SDC_ISA_AVX2, SDC_ISA_AVX512, SDC_ISA_AMX } sdc_isa;

/* The highest level this CPU (and kernel: AMX needs Linux's permission) runs. */
sdc_isa sdc_isa_host(void);
/* What the kernels use: the host's level, or less when SDC_ISA caps it
 * (SDC_ISA=scalar|avx2|avx512|amx; a cap above the host's level changes
 * nothing). The same for every kernel of the process, read once. */
sdc_isa sdc_isa_level(void);
/* Whether the level in use includes AVX512-BF16 dot products / AMX tiles. */
int sdc_isa_bf16(void);
int sdc_isa_amx(void);
const char *sdc_isa_name(sdc_isa isa); /* "scalar", "avx2", "avx512", "amx" */
/* "avx2" -> *isa; SDC_EINVAL naming the value and the choices otherwise. */
int sdc_isa_parse(const char *s, sdc_isa *isa /* OUT */);
/* SDC_EINVAL (message naming the value) when SDC_ISA is set to something
 * that is not a level; programs check it at start-up and exit 2. */
int sdc_isa_env_check(void);

/* Tests only: caps the level as SDC_ISA would (-1: back to SDC_ISA / the
 * host). Not thread-safe; oneDNN keeps the cap it started with. */
void sdc__isa_force(int isa);

#endif
