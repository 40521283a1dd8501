/* log.c: srv_log (see log.h).  The level is this file's own static, read by nothing else. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static atomic_int g_log_level = SRV_LOG_INFO;

void srv_log_set_level(int level) { atomic_store(&g_log_level, level); }

int srv_log_enabled(int level) { return level <= atomic_load(&g_log_level); }

void srv_log(int level, const char *fmt, ...) {
    if (!srv_log_enabled(level)) return;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ vitd %s: %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level & 3], msg);
}
