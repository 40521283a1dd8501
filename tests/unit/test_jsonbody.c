/* test_jsonbody.c: JSON request bodies (server/jsonbody.c): base64 against Python's encoder on
 * every length 0..64 of random bytes (standard and URL-safe, with and without padding, with
 * line breaks), hostile base64, both request shapes, parameters, data: URIs, limits, junk. */
#include "harness.h"
#include "../../server/jsonbody.c"

#include <stdlib.h>

static const char *STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* reference encoder (RFC 4648 section 4), with '=' padding */
static size_t enc(const uint8_t *in, size_t n, char *out, int urlsafe, int pad) {
    size_t w = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        int k = n - i >= 3 ? 4 : (int)(n - i) + 1;
        for (int j = 0; j < 4; j++) {
            char ch = STD[(v >> (18 - 6 * j)) & 63];
            if (urlsafe && ch == '+') ch = '-';
            if (urlsafe && ch == '/') ch = '_';
            if (j < k) out[w++] = ch;
            else if (pad) out[w++] = '=';
        }
    }
    out[w] = 0;
    return w;
}

/* parse a NUL-terminated JSON text (copied: jb_parse overwrites its body) */
static int parse(const char *json, const uint8_t **data, size_t *lens, int max, jb_params *p,
                 char *err, uint8_t **keep) {
    size_t n = strlen(json);
    uint8_t *b = malloc(n + 1);
    memcpy(b, json, n + 1);
    *keep = b;
    return jb_parse(b, n, data, lens, max, p, err, 200);
}

int main(void) {
    srand(7);
    uint8_t raw[64], dec[128];
    char b64[200];
    int roundtrip_ok = 1;
    for (int n = 0; n <= 64; n++) {
        for (int i = 0; i < n; i++) raw[i] = (uint8_t)rand();
        for (int mode = 0; mode < 4; mode++) {            /* std/urlsafe x pad/no pad */
            size_t m = enc(raw, (size_t)n, b64, mode & 1, mode & 2);
            long got = jb_base64_decode(b64, m, dec);
            if (got != n || memcmp(dec, raw, (size_t)n) != 0) roundtrip_ok = 0;
            /* in place: out == in */
            char tmp[200];
            memcpy(tmp, b64, m + 1);
            got = jb_base64_decode(tmp, m, (uint8_t *)tmp);
            if (got != n || memcmp(tmp, raw, (size_t)n) != 0) roundtrip_ok = 0;
        }
    }
    CHECK(roundtrip_ok, "base64 round trip, lengths 0..64, std/url-safe, padded/unpadded, in place");
    CHECK(jb_base64_decode("aGVs\r\nbG8=\n", 11, dec) == 5 && !memcmp(dec, "hello", 5), "line breaks skipped");
    CHECK(jb_base64_decode("aGVsbG8", 7, dec) == 5, "missing padding accepted");
    CHECK(jb_base64_decode("a", 1, dec) < 0, "one dangling character rejected");
    CHECK(jb_base64_decode("aGVsbG8==", 9, dec) < 0, "too much padding rejected");
    CHECK(jb_base64_decode("aG=Vs", 5, dec) < 0, "data after padding rejected");
    CHECK(jb_base64_decode("aGVs*G8=", 8, dec) < 0, "character outside the alphabet rejected");
    CHECK(jb_base64_decode("====", 4, dec) < 0, "padding only rejected");
    CHECK(jb_base64_decode("aGVsbA\x80", 7, dec) < 0, "high byte rejected");

    const uint8_t *data[4];
    size_t lens[4];
    jb_params p;
    char err[200];
    uint8_t *keep;
    /* "hello" = aGVsbG8=, "world!" = d29ybGQh */
    int n = parse("{\"images\": [\"aGVsbG8=\", \"d29ybGQh\"], \"top_k\": 3, \"attention\": \"cls\"}", data, lens, 4, &p, err, &keep);
    CHECK(n == 2 && lens[0] == 5 && !memcmp(data[0], "hello", 5) && lens[1] == 6 && !memcmp(data[1], "world!", 6),
          "images list decoded in order (%d: %s)", n, n < 0 ? err : "");
    CHECK(p.top_k == 3 && !p.top_k_invalid && !strcmp(p.attention, "cls"), "top-level top_k and attention");
    CHECK(data[0] >= keep && data[1] + lens[1] <= keep + strlen("{\"images\": [\"aGVsbG8=\", \"d29ybGQh\"], \"top_k\": 3, \"attention\": \"cls\"}"),
          "decoded spans lie inside the body");
    free(keep);

    n = parse("{\"inputs\": \"data:image/png;base64,aGVsbG8\", \"parameters\": {\"top_k\": 2}}", data, lens, 4, &p, err, &keep);
    CHECK(n == 1 && lens[0] == 5 && !memcmp(data[0], "hello", 5) && p.top_k == 2, "Hugging Face shape with a data: URI and parameters");
    free(keep);
    n = parse("{\"inputs\": [\"aGVsbG8=\"], \"parameters\": {\"top_k\": 2}, \"top_k\": 4}", data, lens, 4, &p, err, &keep);
    CHECK(n == 1 && p.top_k == 4, "a top-level top_k wins over parameters.top_k");
    free(keep);
    n = parse("{\"images\": [\"aGVsbG8=\"], \"top_k\": 2.5}", data, lens, 4, &p, err, &keep);
    CHECK(n == 1 && p.top_k_invalid, "non-integer top_k flagged");
    free(keep);
    n = parse("{\"images\": [\"aGVsbG8=\"], \"top_k\": \"3\"}", data, lens, 4, &p, err, &keep);
    CHECK(n == 1 && p.top_k_invalid, "string top_k flagged");
    free(keep);
    n = parse("{\"images\": [\"aGVsbG8=\"], \"attention\": 5}", data, lens, 4, &p, err, &keep);
    CHECK(n == 1 && !strcmp(p.attention, "?"), "non-string attention marked for rejection");
    free(keep);
    n = parse("{\"images\": [\"aGVsbG8=\"], \"normalize\": true}", data, lens, 4, &p, err, &keep);
    CHECK(n == 1 && p.normalize == 1, "normalize true (POST /embed)");
    free(keep);
    n = parse("{\"inputs\": \"aGVsbG8=\", \"parameters\": {\"normalize\": false}}", data, lens, 4, &p, err, &keep);
    CHECK(n == 1 && p.normalize == 0, "normalize false in parameters");
    free(keep);
    n = parse("{\"images\": [\"aGVsbG8=\"], \"normalize\": \"yes\"}", data, lens, 4, &p, err, &keep);
    CHECK(n == 1 && p.normalize == 2, "non-boolean normalize marked for rejection");
    free(keep);
    n = parse("{\"images\": [\"aGVsbG8=\"]}", data, lens, 4, &p, err, &keep);
    CHECK(n == 1 && p.normalize == -1, "normalize not given: -1");
    free(keep);

    struct { const char *json; int want; const char *what; } bad[] = {
        {"", JB_BAD_REQUEST, "empty body"},
        {"{\"images\": [\"aGVsbG8=\"]", JB_BAD_REQUEST, "truncated JSON"},
        {"[\"aGVsbG8=\"]", JB_BAD_REQUEST, "top level not an object"},
        {"{}", JB_BAD_REQUEST, "no images key"},
        {"{\"image\": \"aGVsbG8=\"}", JB_BAD_REQUEST, "misspelt key"},
        {"{\"images\": []}", JB_BAD_REQUEST, "empty list"},
        {"{\"images\": 5}", JB_BAD_REQUEST, "images a number"},
        {"{\"images\": [5]}", JB_BAD_REQUEST, "list element a number"},
        {"{\"images\": [null]}", JB_BAD_REQUEST, "list element null"},
        {"{\"images\": [\"aGVsbG8=\"], \"inputs\": \"aGVsbG8=\"}", JB_BAD_REQUEST, "both images and inputs"},
        {"{\"images\": [\"aGVsbG8=\"], \"parameters\": 3}", JB_BAD_REQUEST, "parameters not an object"},
        {"{\"images\": [\"not base64!\"]}", JB_BAD_BASE64, "invalid base64"},
        {"{\"images\": [\"\"]}", JB_BAD_BASE64, "empty string"},
        {"{\"images\": [\"data:image/png,aGVsbG8=\"]}", JB_BAD_BASE64, "data: URI without ;base64"},
        {"{\"images\": [\"data:\"]}", JB_BAD_BASE64, "bare data: prefix"},
        {"{\"images\": [\"aGVsbG8=\", \"aGVsbG8=\", \"aGVsbG8=\", \"aGVsbG8=\", \"aGVsbG8=\"]}", JB_TOO_MANY, "more images than max"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        n = parse(bad[i].json, data, lens, 4, &p, err, &keep);
        CHECK(n == bad[i].want && err[0], "rejected: %s (%d, %s)", bad[i].what, n, err);
        free(keep);
    }
    /* deep nesting and a huge list stay bounded (cJSON limits nesting; max bounds the list) */
    char deep[3000];
    strcpy(deep, "{\"images\": ");
    for (int i = 0; i < 1200; i++) strcat(deep, "[");
    n = parse(deep, data, lens, 4, &p, err, &keep);
    CHECK(n == JB_TOO_COMPLEX && strstr(err, "deeper"), "1200 nested brackets rejected before parsing: %s", err);
    free(keep);

    /* the pre-scan: trailing data, a second document, unknown parameters, value count, depth */
    struct { const char *json; int want; const char *what; } pre[] = {
        {"{\"images\": [\"aGVsbG8=\"]} x", JB_BAD_REQUEST, "garbage after the document"},
        {"{\"images\": [\"aGVsbG8=\"]}{\"images\": [\"aGVsbG8=\"]}", JB_BAD_REQUEST, "a second document"},
        {"{\"images\": [\"aGVsbG8=\"]} 5", JB_BAD_REQUEST, "a number after the document"},
        {"{\"images\": [\"aGVsbG8=\"], \"parameters\": {\"top_k\": 2, \"topk\": 3}}", JB_BAD_REQUEST,
         "unknown key in parameters"},
        {"{\"images\": [\"aGVsbG8=\"], \"x\": [[[[[[[[1]]]]]]]]}", JB_TOO_COMPLEX, "depth 9"},
        {"{\"images\": [\"aGVsbG8=\"], \"x\": [1, 2, \"\\\"]]]]]]]]]]\\\"\", 3]} ", JB_BAD_REQUEST,
         "brackets inside a string do not count (then the unknown key)"},
        {"{\"images\": [\"aGVs", JB_BAD_REQUEST, "unterminated string"},
    };
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) {
        err[0] = 0;
        n = parse(pre[i].json, data, lens, 4, &p, err, &keep);
        CHECK(n == pre[i].want && err[0], "pre-scan: %s (%d, %s)", pre[i].what, n, err);
        free(keep);
    }
    n = parse("{\"images\": [\"aGVsbG8=\"], \"parameters\": {\"top_k\": 2, \"attention\": \"cls\"}}  \r\n", data, lens,
              4, &p, err, &keep);
    CHECK(n == 1 && p.top_k == 2 && !strcmp(p.attention, "cls"), "known parameters and trailing whitespace pass (%d %s)",
          n, n < 0 ? err : "");
    free(keep);
    /* JB_MAX_VALUES: a list of numbers one past the limit is refused, at the limit it reaches cJSON */
    for (int extra = 0; extra < 2; extra++) {
        size_t cap = 32 + 2 * (size_t)JB_MAX_VALUES;
        char *big = malloc(cap);
        int k = 0;
        k += sprintf(big + k, "{\"images\": [\"aGVsbG8=\"], \"x\": [");
        int nums = JB_MAX_VALUES - 6 + extra;   /* + the object, 2 keys, 2 lists, 1 string */
        for (int i = 0; i < nums; i++) k += sprintf(big + k, i ? ",1" : "1");
        sprintf(big + k, "]}");
        n = parse(big, data, lens, 4, &p, err, &keep);
        if (extra) CHECK(n == JB_TOO_COMPLEX && strstr(err, "values"), "%d values: refused before parsing (%s)",
                         JB_MAX_VALUES + 1, err);
        else CHECK(n == JB_BAD_REQUEST && strstr(err, "unknown key"), "%d values: parsed (then the unknown key: %s)",
                   JB_MAX_VALUES, err);
        free(keep);
        free(big);
    }
    return TEST_SUMMARY();
}
