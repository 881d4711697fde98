/* test_isa.h - kernel tests run again under each SDC_ISA cap below this CPU's level (ctest's *_isa_* variants). */
#ifndef SDC_TEST_ISA_H
#define SDC_TEST_ISA_H

#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "isa.h"
#include "test_util.h"

/* Under SDC_ISA: skips (77) when the cap is not below this CPU's level, as
 * there is nothing to emulate, and checks that the kernels took the cap. */
static inline void sdc_test_isa_cap(void) {
  const char *env = getenv("SDC_ISA");
  sdc_isa cap;
  if (!env || !*env) return;
  if (sdc_isa_parse(env, &cap)) {
    fprintf(stderr, "%s\n", sdc_errmsg(SDC_EINVAL));
    exit(1);
  }
  if (cap >= sdc_isa_host()) {
    char why[160];
    snprintf(why, sizeof why, "SDC_ISA=%s is not below this CPU's level (%s): nothing to emulate", env,
             sdc_isa_name(sdc_isa_host()));
    sdc_test_skip(why);
  }
  CHECK(sdc_isa_level() == cap, "SDC_ISA=%s: kernels run at %s", env, sdc_isa_name(sdc_isa_level()));
}

#endif
