/* placeholder: sched_euler is being written */
#include "error.h"
#include "sched_impl.h"
static int sdc__stub_init(sdc_scheduler *s) { (void)s; return sdc_seterr(SDC_EUNSUPPORTED, "scheduler not implemented yet"); }
const sdc__sched_ops sdc__euler_ops = {.init = sdc__stub_init};
const sdc__sched_ops sdc__euler_a_ops = {.init = sdc__stub_init};
const sdc__sched_ops sdc__heun_ops = {.init = sdc__stub_init};
const sdc__sched_ops sdc__lms_ops = {.init = sdc__stub_init};
