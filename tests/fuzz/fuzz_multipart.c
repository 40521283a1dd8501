/* fuzz_multipart.c: libFuzzer harness for the multipart/form-data parser (server/multipart.c):
 * mp_boundary on a Content-Type header value and mp_parse on the body.
 * Input: the header value up to the first '\n' (at most 255 bytes), then the body.  When the
 * header gives no boundary the body is still parsed, with the boundary "vitdfuzz", so body
 * mutations are explored whatever the header looks like.  Checks the parser's promises: at
 * most max_parts parts, each inside the body, names NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/multipart.c"

#define MAX_PARTS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
    if (!nl) return 0;
    char ct[256];
    size_t hl = (size_t)(nl - data);
    memcpy(ct, data, hl);
    ct[hl] = '\0';
    const uint8_t *body = nl + 1;
    size_t blen = size - hl - 1;

    char b[MP_MAX_BOUNDARY + 1];
    if (mp_boundary(ct, b, sizeof b) == 0) {
        size_t n = strlen(b);
        if (n == 0 || n > MP_MAX_BOUNDARY) abort();
    } else {
        strcpy(b, "vitdfuzz");
    }
    /* the body in its own allocation, so ASan sees any read past its end */
    uint8_t *copy = malloc(blen ? blen : 1);
    if (!copy) return 0;
    memcpy(copy, body, blen);
    mp_part parts[MAX_PARTS];
    char err[128] = "";
    int n = mp_parse(copy, blen, b, parts, MAX_PARTS, err, sizeof err);
    if (n < -1 || n > MAX_PARTS || (n < 0 && !err[0])) abort();
    for (int i = 0; i < n; i++) {
        const mp_part *p = &parts[i];
        if (p->data < copy || p->len > blen || p->data + p->len > copy + blen) abort();
        if (strnlen(p->name, MP_NAME_MAX) == MP_NAME_MAX || strnlen(p->filename, MP_NAME_MAX) == MP_NAME_MAX ||
            strnlen(p->content_type, MP_NAME_MAX) == MP_NAME_MAX)
            abort();
    }
    free(copy);
    return 0;
}
