/* harness.h: a tiny test harness (redis/llm.c style).  Each check prints
 *   PASS name [maxdiff=... tol=...]   or   FAIL name: why
 * and TEST_SUMMARY() prints "N passed, M failed[, K skipped]" and returns the exit status.
 * Usage:
 *   int main(void) { CHECK(1 + 1 == 2, "arith"); CHECK_CLOSE(a, b, n, 1e-5, "vec"); return TEST_SUMMARY(); }
 */
#ifndef VIT_TEST_HARNESS_H
#define VIT_TEST_HARNESS_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int th_passed, th_failed, th_skipped;

static void th_result(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static void th_result(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    if (ok) th_passed++; else th_failed++;
}

#define CHECK(cond, ...) th_result(!!(cond), __VA_ARGS__)
#define SKIP(...) do { printf("SKIP "); printf(__VA_ARGS__); printf("\n"); th_skipped++; } while (0)

/* max |a-b| over n floats; NaN/inf anywhere is infinitely wrong */
static float th_maxdiff(const float *a, const float *b, size_t n) __attribute__((unused));
static float th_maxdiff(const float *a, const float *b, size_t n) {
    float m = 0.f;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        float d = fabsf(a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

/* PASS when max |a-b| <= tol */
#define CHECK_CLOSE(a, b, n, tol, name) do { \
    float th_d_ = th_maxdiff((a), (b), (n)); \
    th_result(th_d_ <= (tol), "%s maxdiff=%.3g tol=%.3g", (name), (double)th_d_, (double)(tol)); \
} while (0)

static int th_summary(void) __attribute__((unused));
static int th_summary(void) {
    if (th_skipped) printf("%d passed, %d failed, %d skipped\n", th_passed, th_failed, th_skipped);
    else printf("%d passed, %d failed\n", th_passed, th_failed);
    return th_failed ? 1 : 0;
}
#define TEST_SUMMARY() th_summary()

#endif
