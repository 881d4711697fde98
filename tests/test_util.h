/* test_util.h - tiny assertion helpers shared by the C tests. */
#ifndef SDC_TEST_UTIL_H
#define SDC_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int sdc_test_failures;

/* Records a failure with file:line and a printf message; never aborts, so one
 * run reports every broken case. */
#define CHECK(cond, ...)                                               \
  do {                                                                 \
    if (!(cond)) {                                                     \
      sdc_test_failures++;                                             \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                    \
      fputc('\n', stderr);                                             \
    }                                                                  \
  } while (0)

/* The reference folder ($SDC_REF or ../shared/ref), or NULL when absent. */
const char *sdc_test_ref_dir(void);
/* Prints "SKIP: why" and exits 77, which ctest reports as skipped. */
void sdc_test_skip(const char *why) __attribute__((noreturn));
/* A fresh private directory under $TMPDIR; removed by sdc_test_rmtree(). */
const char *sdc_test_tmpdir(void);
void sdc_test_rmtree(const char *dir);
/* Deterministic uniform floats in [-1, 1). */
void sdc_test_fill(float *x, int64_t n, uint32_t seed);
/* max |a - b| / max(1, max |b|) */
double sdc_test_rel_err(const float *a, const float *b, int64_t n);
/* Runs a shell command with stdout discarded; its stderr goes to err (NUL-
 * terminated, cut at n). Returns the exit status, or -1 when it did not exit. */
int sdc_test_run(const char *cmd, char *err, size_t n);
/* A TCP port on 127.0.0.1 that was free a moment ago, or -1. */
int sdc_test_free_port(void);
/* Lines in s (count of '\n'). */
int sdc_test_lines(const char *s);
/* Prints "N passed, N failed" style summary and returns the exit code. */
int sdc_test_finish(const char *name);

#endif
