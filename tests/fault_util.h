/* fault_util.h - what the fault tests (test_fencing, test_redis_faults, test_churn, test_dead_letter) share:
 * real redis-server and `sdc cluster` processes, their logs, the job hashes, the events channel and the pixel comparison with sdc generate. */
#ifndef SDC_FAULT_UTIL_H
#define SDC_FAULT_UTIL_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <sys/types.h>

extern const char *g_sdc, *g_tmp;
extern char g_model[1024];
extern redisContext *g_rc; /* the test's own connection (reconnected by fu_reconnect) */
extern int g_port;         /* the Redis port */

/* Skips (77) without the tiny model or redis-server; sets g_sdc, g_model, g_tmp. */
void fu_init(int argc, char **argv, const char *name);
/* Starts argv (NULL-terminated) with stdout to out and stderr to err (NULL: inherited). */
pid_t fu_spawn(char **argv, const char *out, const char *err);
/* Waits at most timeout_ms for our child pid; SIGKILL after that. Its wait status, or -1. */
int fu_reap(pid_t pid, int timeout_ms);
/* redis-server on g_port in g_tmp; extra: more arguments (NULL-terminated list, may be NULL). */
pid_t fu_start_redis(const char *const *extra);
/* (Re)connects g_rc to g_port, trying for up to timeout_ms; 1 when connected. */
int fu_reconnect(int timeout_ms);
/* `sdc cluster` on Redis url (NULL: its own) with extra flags, stderr to log; waits until its five
 * workers registered. Its pid, or 0. */
pid_t fu_start_cluster(const char *url, const char *const *extra, const char *log);
/* SIGTERM, then wait (60 s at most, then SIGKILL) for the cluster to drain and stop its children. */
void fu_stop_cluster(pid_t pid);
/* How many lines of log hold needle; the last one copied into line (when not NULL). */
int fu_log_count(const char *log, const char *needle, char *line, size_t n);
/* The pid the cluster last started `name` under, or 0. */
pid_t fu_child_pid(const char *log, const char *name);
/* HGET sdc:job:<id> field (caller frees), or NULL. */
char *fu_hget(const char *id, const char *field);
long long fu_hget_ll(const char *id, const char *field);
int fu_is_state(const char *id, const char *state);
/* Waits until every id is in a final state; how many are `done`. */
int fu_wait_done(const char *const *ids, int n, int timeout_ms);
/* XADD sdc:jobs * job <json>; the entry id (static buffer) or "". */
const char *fu_xadd(const char *json);
/* An integer reply (or XPENDING's count), -1 on error. */
long long fu_int(const char *cmd);
/* The dead-letter entry whose field `field` equals value: its "reason" (caller frees), or NULL. */
char *fu_dead_reason(const char *field, const char *value);
/* The job's image 0 against `sdc generate` with the same parameters (read back from the hash); returns
 * the number of differing bytes, -1 when it cannot compare. */
long long fu_compare(const char *id, const char *prompt, const char *sched, int steps, int seed);

/* A PSUBSCRIBE sdc:job:*:events connection; fu_events_collect reads what arrived (within wait_ms) and
 * counts, per id, final events and running events after a final one. */
redisContext *fu_events_open(void);
typedef struct {
  char id[64];
  int finals, running_after_final, final_seen;
} fu_job_events;
void fu_events_collect(redisContext *sub, fu_job_events *jobs, int n, int wait_ms);

#endif
