/* logfmt.c: log line formats and W3C traceparent (logfmt.h). */
#include "logfmt.h"

#include <stdio.h>
#include <string.h>

/* ---- JSON lines ------------------------------------------------------------------------- */

typedef struct { char *p; size_t n, w; int cut; } out_buf;

static void put(out_buf *b, const char *s, size_t l) {
    if (b->cut) return;
    if (b->w + l + 1 > b->n) { b->cut = 1; return; }
    memcpy(b->p + b->w, s, l);
    b->w += l;
    b->p[b->w] = '\0';
}

static void put_s(out_buf *b, const char *s) { put(b, s, strlen(s)); }

/* s as a JSON string: control characters, DEL and every byte >= 0x80 escaped as \u00XX (so
 * a line is valid JSON whatever bytes a client put in its path) */
static void put_json_str(out_buf *b, const char *s) {
    put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; c && *c; c++) {
        char e[8];
        if (*c == '"' || *c == '\\') { e[0] = '\\'; e[1] = (char)*c; put(b, e, 2); }
        else if (*c == '\n') put(b, "\\n", 2);
        else if (*c == '\t') put(b, "\\t", 2);
        else if (*c < 0x20 || *c >= 0x7f) { snprintf(e, sizeof e, "\\u%04x", *c); put(b, e, 6); }
        else put(b, (const char *)c, 1);
    }
    put(b, "\"", 1);
}

static void put_kv_str(out_buf *b, const char *k, const char *v) {
    if (!v) return;
    put(b, ",\"", 2);
    put_s(b, k);
    put(b, "\":", 2);
    put_json_str(b, v);
}

static void put_kv_num(out_buf *b, const char *k, const char *fmt, double v) {
    char num[48];
    snprintf(num, sizeof num, fmt, v);
    put(b, ",\"", 2);
    put_s(b, k);
    put(b, "\":", 2);
    put_s(b, num);
}

static void json_line(out_buf *b, const char *time, const char *level, const char *msg, const logfmt_access *a) {
    put_s(b, "{\"time\":");
    put_json_str(b, time);
    put_kv_str(b, "level", level);
    put_kv_str(b, "msg", msg);
    if (a) {
        put_kv_str(b, "request_id", a->request_id);
        put_kv_str(b, "method", a->method);
        put_kv_str(b, "path", a->path);
        put_kv_num(b, "status", "%.0f", a->status);
        put_kv_num(b, "duration_ms", "%.3f", a->duration_ms);
        put_kv_num(b, "images", "%.0f", a->images);
        if (a->head_version >= 0) put_kv_num(b, "head_version", "%.0f", (double)a->head_version);
        put_kv_str(b, "client", a->client);
        put_kv_str(b, "trace_id", a->trace_id);
        put_kv_str(b, "span_id", a->span_id);
        put_kv_str(b, "note", a->note);
    }
    put(b, "}", 1);
}

void logfmt_line(char *out, size_t n, int format, const char *time, const char *level, const char *msg,
                 const logfmt_access *a) {
    if (!out || n == 0) return;
    out[0] = '\0';
    if (format != LOGFMT_JSON) {
        snprintf(out, n, "%s vitd %s: %s", time, level, msg);
        return;
    }
    out_buf b = {out, n, 0, 0};
    json_line(&b, time, level, msg, a);
    if (b.cut) {                                     /* too long: the fixed fields, msg cut */
        char m[256];
        snprintf(m, sizeof m, "%.200s...", msg ? msg : "");
        out_buf c = {out, n, 0, 0};
        out[0] = '\0';
        json_line(&c, time, level, m, NULL);
        if (c.cut) snprintf(out, n, "{\"msg\":\"log line too long\"}");
    }
}

/* ---- traceparent -------------------------------------------------------------------------- */

static int lower_hex(const char *s, size_t n) {
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
        if (c != '0') nonzero = 1;
    }
    return nonzero;
}

int logfmt_trace_parse(const char *h, logfmt_trace *t) {
    if (!h) return -1;
    size_t len = strlen(h);
    /* vv-<32>-<16>-ff: 55 characters; a later version may append "-..." */
    if (len < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') return -1;
    if (lower_hex(h, 2) < 0 || !strncmp(h, "ff", 2)) return -1;
    if (!strncmp(h, "00", 2) && len != 55) return -1;
    if (len > 55 && h[55] != '-') return -1;
    if (lower_hex(h + 3, 32) != 1 || lower_hex(h + 36, 16) != 1 || lower_hex(h + 53, 2) < 0) return -1;
    memcpy(t->trace_id, h + 3, 32);
    t->trace_id[32] = '\0';
    memcpy(t->parent_id, h + 36, 16);
    t->parent_id[16] = '\0';
    memcpy(t->flags, h + 53, 2);
    t->flags[2] = '\0';
    return 0;
}

void logfmt_traceparent(char out[56], const logfmt_trace *t, const char *span) {
    snprintf(out, 56, "00-%.32s-%.16s-%.2s", t->trace_id, span, t->flags);
}
