/* multipart.c: bounded multipart/form-data parsing over an in-memory body (see multipart.h). */
#include "multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return -1;
}

static int is_bchar(int c) {
    return isalnum(c) || strchr("'()+_,-./:=? ", c) != NULL;
}

/* Parse one parameter value at *p (quoted-string or token) into out; advances *p.
 * Returns 0, or -1 on an unterminated quote. */
static int param_value(const char **p, const char *end, char *out, size_t outlen) {
    const char *s = *p;
    size_t n = 0;
    if (s < end && *s == '"') {
        s++;
        while (s < end && *s != '"') {
            if (*s == '\\' && s + 1 < end) s++;
            if (n + 1 < outlen) out[n++] = *s;
            s++;
        }
        if (s >= end) return -1;
        s++; /* closing quote */
    } else {
        while (s < end && *s != ';' && *s != ' ' && *s != '\t') {
            if (n + 1 < outlen) out[n++] = *s;
            s++;
        }
    }
    if (outlen) out[n] = '\0';
    *p = s;
    return 0;
}

/* Find parameter `key` in "type; k=v; k2="v2"" (the text after the first ';').
 * Returns 1 found, 0 absent, -1 malformed. */
static int find_param(const char *s, const char *end, const char *key, char *out, size_t outlen) {
    size_t klen = strlen(key);
    const char *p = memchr(s, ';', (size_t)(end - s));
    while (p && p < end) {
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        const char *k = p;
        while (p < end && *p != '=' && *p != ';') p++;
        if (p >= end || *p == ';') continue;         /* parameter without value: skip */
        const char *kend = p;
        while (kend > k && (kend[-1] == ' ' || kend[-1] == '\t')) kend--;
        p++; /* '=' */
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        char tmp[MP_MAX_BOUNDARY + 2];
        char *dst = out;
        size_t dlen = outlen;
        int match = (size_t)(kend - k) == klen && strncasecmp(k, key, klen) == 0;
        if (!match) { dst = tmp; dlen = sizeof tmp; }
        if (param_value(&p, end, dst, dlen) != 0) return -1;
        if (match) return 1;
        p = memchr(p, ';', (size_t)(end - p));
    }
    return 0;
}

int mp_boundary(const char *ct, char *out, size_t outlen) {
    if (!ct || !out || outlen < MP_MAX_BOUNDARY + 1) return -1;
    while (*ct == ' ' || *ct == '\t') ct++;
    static const char type[] = "multipart/form-data";
    if (strncasecmp(ct, type, sizeof type - 1) != 0) return -1;
    const char *rest = ct + sizeof type - 1;
    if (*rest != ';' && *rest != ' ' && *rest != '\t') return -1;
    const char *end = ct + strlen(ct);
    char b[MP_MAX_BOUNDARY + 2];
    int r = find_param(ct, end, "boundary", b, sizeof b);
    if (r != 1) return -1;
    size_t n = strlen(b);
    if (n == 0 || n > MP_MAX_BOUNDARY || b[n - 1] == ' ') return -1;
    for (size_t i = 0; i < n; i++)
        if (!is_bchar((unsigned char)b[i])) return -1;
    memcpy(out, b, n + 1);
    return 0;
}

/* Parse the header block [h, hend) of one part into p.  Returns 0 or -1 (malformed). */
static int parse_headers(const char *h, const char *hend, mp_part *p) {
    while (h < hend) {
        const char *eol = memmem(h, (size_t)(hend - h), "\r\n", 2);
        if (!eol) eol = hend;
        const char *colon = memchr(h, ':', (size_t)(eol - h));
        if (!colon || colon == h) return -1;
        size_t klen = (size_t)(colon - h);
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t')) v++;
        if (klen == 19 && strncasecmp(h, "Content-Disposition", 19) == 0) {
            if ((size_t)(eol - v) < 9 || strncasecmp(v, "form-data", 9) != 0) return -1;
            if (find_param(v, eol, "name", p->name, sizeof p->name) < 0) return -1;
            if (find_param(v, eol, "filename", p->filename, sizeof p->filename) < 0) return -1;
        } else if (klen == 12 && strncasecmp(h, "Content-Type", 12) == 0) {
            size_t n = (size_t)(eol - v);
            if (n >= sizeof p->content_type) n = sizeof p->content_type - 1;
            memcpy(p->content_type, v, n);
            p->content_type[n] = '\0';
        }
        h = eol + 2;
    }
    return 0;
}

int mp_parse(const uint8_t *body, size_t len, const char *boundary, mp_part *parts,
             int max_parts, char *err, size_t errlen) {
    if (!boundary) return fail(err, errlen, "no multipart boundary");
    size_t blen = strlen(boundary);
    if (blen == 0 || blen > MP_MAX_BOUNDARY) return fail(err, errlen, "bad multipart boundary");
    char delim[MP_MAX_BOUNDARY + 5];           /* "\r\n--" boundary */
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = blen + 4;
    const char *b = (const char *)body, *end = b + len;
    if (!body || len == 0) return fail(err, errlen, "empty multipart body");

    /* the first delimiter may start the body (without the leading CRLF) */
    const char *pos;
    if (len >= dlen - 2 && memcmp(b, delim + 2, dlen - 2) == 0) {
        pos = b + dlen - 2;
    } else {
        const char *d = memmem(b, len, delim, dlen);
        if (!d) return fail(err, errlen, "multipart boundary not found in body");
        pos = d + dlen;
    }
    int n = 0;
    for (;;) {
        if (end - pos >= 2 && pos[0] == '-' && pos[1] == '-') return n;   /* close delimiter */
        while (pos < end && (*pos == ' ' || *pos == '\t')) pos++;         /* transport padding */
        if (end - pos < 2) return fail(err, errlen, "multipart body truncated");
        if (pos[0] != '\r' || pos[1] != '\n') return fail(err, errlen, "malformed multipart delimiter line");
        pos += 2;
        if (n >= max_parts) return fail(err, errlen, "too many multipart parts");
        mp_part *p = &parts[n];
        memset(p, 0, sizeof *p);
        const char *content;
        if (end - pos >= 2 && pos[0] == '\r' && pos[1] == '\n') {
            content = pos + 2;                                            /* no headers */
        } else {
            size_t window = (size_t)(end - pos);
            if (window > MP_MAX_HEADER_BYTES + 4) window = MP_MAX_HEADER_BYTES + 4;
            const char *hend = memmem(pos, window, "\r\n\r\n", 4);
            if (!hend) {
                if ((size_t)(end - pos) > MP_MAX_HEADER_BYTES) return fail(err, errlen, "multipart part headers too large");
                return fail(err, errlen, "multipart part headers truncated");
            }
            if (parse_headers(pos, hend, p) != 0) return fail(err, errlen, "malformed multipart part header");
            content = hend + 4;
        }
        const char *d = memmem(content, (size_t)(end - content), delim, dlen);
        if (!d) return fail(err, errlen, "multipart body truncated (no closing boundary)");
        p->data = (const uint8_t *)content;
        p->len = (size_t)(d - content);
        n++;
        pos = d + dlen;
    }
}
