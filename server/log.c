/* log.c: srv_log and srv_log_access (see log.h).  The level and the format are this file's own
 * statics, read by nothing else; the line formats are logfmt.c's. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static atomic_int g_log_level = SRV_LOG_INFO;
static atomic_int g_log_format = LOGFMT_TEXT;
static const char *const names[] = {"error", "warn", "info", "debug"};

void srv_log_set_level(int level) { atomic_store(&g_log_level, level); }
void srv_log_set_format(int format) { atomic_store(&g_log_format, format); }

int srv_log_enabled(int level) { return level <= atomic_load(&g_log_level); }

/* now as ISO 8601 UTC with milliseconds */
static void log_time(char *buf, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

void srv_log(int level, const char *fmt, ...) {
    if (!srv_log_enabled(level)) return;
    char msg[1024], t[96], line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_time(t, sizeof t);
    logfmt_line(line, sizeof line, atomic_load(&g_log_format), t, names[level & 3], msg, NULL);
    fprintf(stderr, "%s\n", line);
}

void srv_log_access(const logfmt_access *a) {
    if (!srv_log_enabled(SRV_LOG_INFO)) return;
    char t[96], line[2048];
    log_time(t, sizeof t);
    if (atomic_load(&g_log_format) == LOGFMT_JSON) {
        logfmt_line(line, sizeof line, LOGFMT_JSON, t, "info", "access", a);
    } else {
        char msg[1024], head[48] = "";
        if (a->head_version >= 0) snprintf(head, sizeof head, " head_version=%ld", a->head_version);
        snprintf(msg, sizeof msg, "access %s %s %s %d images=%d%s %.1fms id=%s%s%s%s%s", a->client, a->method, a->path,
                 a->status, a->images, head, a->duration_ms, a->request_id, a->trace_id ? " trace=" : "",
                 a->trace_id ? a->trace_id : "", a->note ? " " : "", a->note ? a->note : "");
        logfmt_line(line, sizeof line, LOGFMT_TEXT, t, "info", msg, NULL);
    }
    fprintf(stderr, "%s\n", line);
}
