/* placeholder: sched_ddpm is being written */
#include "error.h"
#include "sched_impl.h"
static int sdc__stub_init(sdc_scheduler *s) { (void)s; return sdc_seterr(SDC_EUNSUPPORTED, "scheduler not implemented yet"); }
const sdc__sched_ops sdc__ddim_ops = {.init = sdc__stub_init};
const sdc__sched_ops sdc__ddpm_ops = {.init = sdc__stub_init};
const sdc__sched_ops sdc__pndm_ops = {.init = sdc__stub_init};
