/* jsonbody.c: images from a JSON request body (see jsonbody.h). */
#include "jsonbody.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

static int fail(int code, char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

/* 0..63 for the standard and URL-safe alphabets, 64 for whitespace, -1 otherwise */
static int b64_value(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') return 64;
    return -1;
}

long jb_base64_decode(const char *in, size_t n, uint8_t *out) {
    size_t w = 0, pad = 0;
    uint32_t acc = 0;
    int have = 0;                                  /* sextets in acc */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '=') { pad++; continue; }
        int v = b64_value(ch);
        if (v == 64) continue;
        if (v < 0 || pad) return -1;               /* bad character, or data after '=' */
        acc = acc << 6 | (uint32_t)v;
        if (++have == 4) {
            out[w++] = (uint8_t)(acc >> 16);
            out[w++] = (uint8_t)(acc >> 8);
            out[w++] = (uint8_t)acc;
            acc = 0;
            have = 0;
        }
    }
    /* a final group of 2 or 3 sextets is 1 or 2 bytes; padding, when given, must complete it */
    if (have == 1) return -1;
    if (pad && (have == 0 || have + pad != 4)) return -1;
    if (have == 2) out[w++] = (uint8_t)(acc >> 4);
    if (have == 3) {
        out[w++] = (uint8_t)(acc >> 10);
        out[w++] = (uint8_t)(acc >> 2);
    }
    return (long)w;
}

/* ---- the pre-scan: depth, value count, trailing data ------------------------------------ */

static int json_ws(unsigned char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* Structure of body[0..len) without building anything: JB_TOO_COMPLEX past the limits,
 * JB_BAD_REQUEST for data after the first complete document (or an unterminated string);
 * 0 otherwise (what else is malformed, cJSON reports). */
static int json_prescan(const uint8_t *b, size_t len, long max_values, char *err, size_t errlen) {
    int depth = 0, done = 0;
    long values = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char ch = b[i];
        if (json_ws(ch)) { i++; continue; }
        if (done)
            return fail(JB_BAD_REQUEST, err, errlen, "data after the JSON document (at byte %zu)", i);
        if (ch == ',' || ch == ':') { i++; continue; }
        if (ch == '}' || ch == ']') {
            if (--depth <= 0) done = 1;
            i++;
            continue;
        }
        if (++values > max_values)
            return fail(JB_TOO_COMPLEX, err, errlen, "more than %ld JSON values", max_values);
        if (ch == '{' || ch == '[') {
            if (++depth > JB_MAX_DEPTH)
                return fail(JB_TOO_COMPLEX, err, errlen, "JSON nested deeper than %d", JB_MAX_DEPTH);
            i++;
            continue;
        }
        if (ch == '"') {                               /* a string: up to the unescaped quote */
            for (i++; i < len && b[i] != '"'; i++)
                if (b[i] == '\\') i++;
            if (i >= len) return fail(JB_BAD_REQUEST, err, errlen, "unterminated JSON string");
            i++;
        } else {                                       /* number, true, false, null (or junk) */
            do i++;
            while (i < len && !json_ws(b[i]) && (b[i] == 0 || !strchr(",:]}[{\"", b[i])));
        }
        if (depth == 0) done = 1;
    }
    return 0;
}

/* one image string -> decoded bytes at body + *w */
int jb_decode_image(const cJSON *s, int idx, uint8_t *body, size_t *w, const uint8_t **data,
                      size_t *lens, char *err, size_t errlen) {
    if (!cJSON_IsString(s) || !s->valuestring)
        return fail(JB_BAD_REQUEST, err, errlen, "image %d: expected a base64 string", idx);
    const char *t = s->valuestring;
    size_t n = strlen(t);
    if (n >= 5 && !strncmp(t, "data:", 5)) {      /* data:image/png;base64,.... */
        const char *comma = memchr(t, ',', n);
        if (!comma || comma - t < 12 || strncmp(comma - 7, ";base64", 7) != 0)
            return fail(JB_BAD_BASE64, err, errlen, "image %d: a data: URI must be ;base64,", idx);
        n -= (size_t)(comma + 1 - t);
        t = comma + 1;
    }
    long got = jb_base64_decode(t, n, body + *w);
    if (got < 0) return fail(JB_BAD_BASE64, err, errlen, "image %d: not valid base64", idx);
    if (got == 0) return fail(JB_BAD_BASE64, err, errlen, "image %d: empty", idx);
    data[idx] = body + *w;
    lens[idx] = (size_t)got;
    *w += (size_t)got;
    return 0;
}

/* the keys "parameters" may hold */
static int params_known(const cJSON *obj, char *err, size_t errlen) {
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        const char *key = it->string ? it->string : "";
        if (strcmp(key, "top_k") != 0 && strcmp(key, "attention") != 0 && strcmp(key, "normalize") != 0)
            return fail(JB_BAD_REQUEST, err, errlen,
                        "unknown key \"%.40s\" in \"parameters\" (expected top_k, attention, normalize)", key);
    }
    return 0;
}

static void take_params(const cJSON *obj, jb_params *p) {
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(obj, "top_k");
    if (k) {
        double v = cJSON_IsNumber(k) ? k->valuedouble : NAN;
        if (v == v && v >= 1 && v <= 1e6 && v == floor(v)) p->top_k = (int)v;
        else p->top_k_invalid = 1;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, "attention");
    if (a) {
        if (cJSON_IsString(a) && a->valuestring && strlen(a->valuestring) < sizeof p->attention)
            strcpy(p->attention, a->valuestring);
        else
            strcpy(p->attention, "?");                 /* the caller rejects it by name */
    }
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(obj, "normalize");
    if (nz) p->normalize = cJSON_IsBool(nz) ? cJSON_IsTrue(nz) : 2;
}

cJSON *jb_json_parse(const uint8_t *body, size_t len, long max_values, int *status, char *err, size_t errlen) {
    int pre = json_prescan(body, len, max_values, err, errlen);
    if (pre < 0) {
        if (status) *status = pre;
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)body, len);
    if (!root) {
        if (status) *status = JB_BAD_REQUEST;
        fail(JB_BAD_REQUEST, err, errlen, "body is not valid JSON");
    }
    return root;
}

int jb_parse(uint8_t *body, size_t len, const uint8_t **data, size_t *lens, int max,
             jb_params *p, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    p->normalize = -1;
    int pst = JB_BAD_REQUEST;
    cJSON *root = jb_json_parse(body, len, JB_MAX_VALUES, &pst, err, errlen);
    if (!root) return pst;
    int rc = JB_BAD_REQUEST;
    if (!cJSON_IsObject(root)) {
        fail(rc, err, errlen, "expected a JSON object {\"images\": [\"<base64>\", ...]}");
        goto out;
    }
    const cJSON *imgs = NULL, *it;
    cJSON_ArrayForEach(it, root) {
        const char *key = it->string ? it->string : "";
        if (!strcmp(key, "images") || !strcmp(key, "inputs")) {
            if (imgs) { fail(rc, err, errlen, "give either \"images\" or \"inputs\", once"); goto out; }
            imgs = it;
        } else if (!strcmp(key, "parameters")) {
            if (!cJSON_IsObject(it)) { fail(rc, err, errlen, "\"parameters\" must be an object"); goto out; }
            if (params_known(it, err, errlen)) goto out;
            take_params(it, p);
        } else if (strcmp(key, "top_k") != 0 && strcmp(key, "attention") != 0 && strcmp(key, "normalize") != 0) {
            fail(rc, err, errlen, "unknown key \"%.40s\" (expected images, inputs, parameters, top_k, attention, normalize)", key);
            goto out;
        }
    }
    take_params(root, p);                             /* top-level keys win over "parameters" */
    if (!imgs) { fail(rc, err, errlen, "no \"images\" (or \"inputs\") in the JSON body"); goto out; }
    size_t w = 0;
    int n = 0;
    if (cJSON_IsString(imgs)) {
        if (max < 1) { rc = fail(JB_TOO_MANY, err, errlen, "at most %d images per request", max); goto out; }
        if ((rc = jb_decode_image(imgs, 0, body, &w, data, lens, err, errlen)) < 0) goto out;
        n = 1;
    } else if (cJSON_IsArray(imgs)) {
        cJSON_ArrayForEach(it, imgs) {
            if (n >= max) { rc = fail(JB_TOO_MANY, err, errlen, "at most %d images per request", max); goto out; }
            if ((rc = jb_decode_image(it, n, body, &w, data, lens, err, errlen)) < 0) goto out;
            n++;
        }
        if (n == 0) { rc = fail(JB_BAD_REQUEST, err, errlen, "the image list is empty"); goto out; }
    } else {
        fail(rc, err, errlen, "\"images\" must be a base64 string or a list of them");
        goto out;
    }
    rc = n;
out:
    cJSON_Delete(root);
    return rc;
}
