/* test_multipart.c: the multipart/form-data parser (server/multipart.c) on good and hostile
 * inputs: boundary extraction (quoted, case, params order), parts with binary data, preamble and
 * epilogue, truncation, missing close delimiter, oversized headers, too many parts, junk. */
#include "harness.h"
#include "../../server/multipart.c"

static int parse_str(const char *body, const char *bnd, mp_part *parts, int max, char *err) {
    return mp_parse((const uint8_t *)body, strlen(body), bnd, parts, max, err, 128);
}

int main(void) {
    char b[MP_MAX_BOUNDARY + 1], err[128];
    mp_part parts[8];

    /* boundary extraction */
    CHECK(mp_boundary("multipart/form-data; boundary=abc123", b, sizeof b) == 0 && !strcmp(b, "abc123"), "boundary plain");
    CHECK(mp_boundary("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a b:c\"", b, sizeof b) == 0 && !strcmp(b, "a b:c"), "boundary quoted, case, after other param");
    CHECK(mp_boundary("multipart/form-data;boundary=xyz;foo=bar", b, sizeof b) == 0 && !strcmp(b, "xyz"), "boundary followed by param");
    CHECK(mp_boundary("multipart/form-data", b, sizeof b) < 0, "no boundary param");
    CHECK(mp_boundary("multipart/form-data; boundary=", b, sizeof b) < 0, "empty boundary");
    CHECK(mp_boundary("multipart/form-data; boundary=\"abc", b, sizeof b) < 0, "unterminated quote");
    CHECK(mp_boundary("multipart/mixed; boundary=abc", b, sizeof b) < 0, "wrong multipart type");
    CHECK(mp_boundary("multipart/form-dataX; boundary=abc", b, sizeof b) < 0, "type prefix only");
    CHECK(mp_boundary("image/jpeg", b, sizeof b) < 0, "not multipart");
    CHECK(mp_boundary("multipart/form-data; boundary=a{b}", b, sizeof b) < 0, "illegal boundary chars");
    char longb[200] = "multipart/form-data; boundary=";
    memset(longb + strlen(longb), 'x', 80);
    CHECK(mp_boundary(longb, b, sizeof b) < 0, "boundary longer than 70");
    CHECK(mp_boundary(NULL, b, sizeof b) < 0, "NULL content type");

    /* one part */
    const char *one = "--XX\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                      "Content-Type: image/png\r\n\r\nPNGDATA\r\n--XX--\r\n";
    int n = parse_str(one, "XX", parts, 8, err);
    CHECK(n == 1 && !strcmp(parts[0].name, "image") && !strcmp(parts[0].filename, "a.png") &&
          !strcmp(parts[0].content_type, "image/png") && parts[0].len == 7 &&
          !memcmp(parts[0].data, "PNGDATA", 7), "one part: name, filename, type, data (n=%d)", n);

    /* preamble, two parts, unquoted name, epilogue, data containing CRLF and near-boundaries */
    const char *two = "preamble junk\r\n--XX\r\nContent-Disposition: form-data; name=image\r\n\r\n"
                      "a\r\n--X b\r\n--XX\r\ncontent-disposition: FORM-DATA; name=\"note\"\r\n\r\n"
                      "\r\n--XX--epilogue";
    n = parse_str(two, "XX", parts, 8, err);
    CHECK(n == 2 && !strcmp(parts[0].name, "image") && parts[0].len == 8 &&
          !memcmp(parts[0].data, "a\r\n--X b", 8) && !strcmp(parts[1].name, "note") && parts[1].len == 0,
          "preamble, near-boundary data, empty part (n=%d %s)", n, n < 0 ? err : "");

    /* binary data with NUL bytes */
    uint8_t bin[128];
    size_t k = 0;
    const char *h = "--B\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n";
    memcpy(bin + k, h, strlen(h)); k += strlen(h);
    for (int i = 0; i < 10; i++) bin[k++] = (uint8_t)(i * 7);  /* includes 0 */
    memcpy(bin + k, "\r\n--B--", 7); k += 7;
    n = mp_parse(bin, k, "B", parts, 8, err, sizeof err);
    CHECK(n == 1 && parts[0].len == 10 && parts[0].data[0] == 0 && parts[0].data[9] == 63, "binary data with NUL");

    /* part without headers */
    n = parse_str("--XX\r\n\r\nraw\r\n--XX--", "XX", parts, 8, err);
    CHECK(n == 1 && parts[0].name[0] == 0 && parts[0].len == 3, "part without headers");

    /* hostile */
    CHECK(parse_str("", "XX", parts, 8, err) < 0, "empty body");
    CHECK(parse_str("no boundary at all", "XX", parts, 8, err) < 0, "boundary absent from body: %s", err);
    CHECK(parse_str("--XX\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nDATA", "XX", parts, 8, err) < 0,
          "no closing boundary: %s", err);
    CHECK(parse_str("--XX\r\nContent-Disposition: form-data; name=\"image\"\r\n", "XX", parts, 8, err) < 0,
          "truncated in headers: %s", err);
    CHECK(parse_str("--XX", "XX", parts, 8, err) < 0, "only a delimiter: %s", err);
    CHECK(parse_str("--XXgarbage\r\n\r\nx\r\n--XX--", "XX", parts, 8, err) < 0, "junk after delimiter: %s", err);
    CHECK(parse_str("--XX\r\nno colon here\r\n\r\nx\r\n--XX--", "XX", parts, 8, err) < 0, "header without colon: %s", err);
    CHECK(parse_str("--XX\r\n: empty name\r\n\r\nx\r\n--XX--", "XX", parts, 8, err) < 0, "header with empty name");
    CHECK(parse_str("--XX\r\nContent-Disposition: attachment; name=image\r\n\r\nx\r\n--XX--", "XX", parts, 8, err) < 0,
          "disposition not form-data");
    CHECK(parse_str("--XX\r\nContent-Disposition: form-data; name=\"ima\r\n\r\nx\r\n--XX--", "XX", parts, 8, err) < 0,
          "unterminated quoted name");
    /* huge header block */
    size_t hl = MP_MAX_HEADER_BYTES * 2;
    char *big = malloc(hl + 64);
    strcpy(big, "--XX\r\nX-Pad: ");
    size_t bl = strlen(big);
    memset(big + bl, 'a', hl);
    strcpy(big + bl + hl, "\r\n\r\nx\r\n--XX--");
    CHECK(parse_str(big, "XX", parts, 8, err) < 0 && strstr(err, "too large"), "oversized headers: %s", err);
    free(big);
    /* too many parts */
    char many[1024] = "";
    for (int i = 0; i < 10; i++) strcat(many, "--XX\r\n\r\np\r\n");
    strcat(many, "--XX--");
    CHECK(parse_str(many, "XX", parts, 8, err) < 0 && strstr(err, "too many"), "too many parts: %s", err);
    CHECK(parse_str(many, "XX", parts, 8, err) < 0, "too many parts (again, no state)");
    /* every prefix of a valid body is rejected, never crashes */
    int bad = 0;
    for (size_t l = 0; l + 2 < strlen(one); l++)
        if (mp_parse((const uint8_t *)one, l, "XX", parts, 8, err, sizeof err) >= 0) bad++;
    CHECK(bad == 0, "every truncation of a valid body rejected (%d accepted)", bad);
    /* random garbage never crashes; count results */
    unsigned seed = 12345;
    uint8_t junk[512];
    int accepted = 0, outside = 0;
    for (int it = 0; it < 2000; it++) {
        size_t jl = (size_t)(it % 512);
        for (size_t i = 0; i < jl; i++) { seed = seed * 1103515245u + 12345u; junk[i] = (uint8_t)"-X\r\n:;=\"ab"[(seed >> 16) % 11]; }
        int np = mp_parse(junk, jl, "X", parts, 8, err, sizeof err);
        if (np >= 0) accepted++;
        for (int i = 0; i < np; i++)
            if (parts[i].data < junk || parts[i].data + parts[i].len > junk + jl) outside++;
    }
    CHECK(outside == 0, "2000 random bodies: every part inside the body (%d accepted, %d outside)", accepted, outside);
    return TEST_SUMMARY();
}
