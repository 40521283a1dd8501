/* logfmt.h: log lines and W3C trace context, apart from where they are written.
 *
 * A log line is text ("<time> vitd <level>: <msg>", as before) or one JSON object
 * ({"time", "level", "msg"} plus, for a request's access line, "request_id", "method", "path",
 * "status", "duration_ms", "images", "head_version", "client", "trace_id", "span_id").
 * traceparent (https://www.w3.org/TR/trace-context/): "<version>-<trace-id>-<parent-id>-<flags>";
 * a valid one is kept (its trace id logged with the request) and the response carries
 * vitd's own span under the same trace. */
#ifndef SRV_LOGFMT_H
#define SRV_LOGFMT_H
#include <stddef.h>

enum { LOGFMT_TEXT = 0, LOGFMT_JSON = 1 };

/* One request, as its access line reports it (NULL strings and head_version < 0 are left out). */
typedef struct logfmt_access {
    const char *request_id, *method, *path, *client, *trace_id, *span_id, *note;
    int status, images;
    double duration_ms;
    long head_version;
} logfmt_access;

/* The line (no trailing newline) into out, always NUL-terminated, cut at n - 1 bytes (a JSON
 * line cut short is closed so it still parses).  time: ISO 8601 UTC; a: NULL for plain lines. */
void logfmt_line(char *out, size_t n, int format, const char *time, const char *level, const char *msg,
                 const logfmt_access *a);

/* A W3C trace context. */
typedef struct logfmt_trace {
    char trace_id[33];         /* 32 lowercase hex, not all zero */
    char parent_id[17];        /* the caller's span: 16 lowercase hex, not all zero */
    char flags[3];             /* 2 hex */
} logfmt_trace;

/* Parse a traceparent header value: 0 and *t filled, or -1 (absent or invalid: version ff,
 * wrong lengths, uppercase or non-hex, all-zero ids, version 00 with extra fields). */
int logfmt_trace_parse(const char *h, logfmt_trace *t);
/* "00-<trace-id>-<span>-<flags>" for the response: t's trace, vitd's span (16 hex). */
void logfmt_traceparent(char out[56], const logfmt_trace *t, const char *span);

#endif
