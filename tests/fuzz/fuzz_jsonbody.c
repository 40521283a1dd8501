/* fuzz_jsonbody.c: libFuzzer harness for JSON request bodies with base64 images
 * (server/jsonbody.c: jb_parse, jb_base64_decode).  The input is the raw body, copied into an
 * allocation of exactly its size (jb_parse decodes the images in place into it, so ASan sees a
 * write past its end).  An accepted body must give 1..max images, each a non-empty span inside
 * the body, in order and not overlapping. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/jsonbody.c"

#define MAX_IMAGES 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);
    const uint8_t *img[MAX_IMAGES];
    size_t lens[MAX_IMAGES];
    jb_params p;
    char err[256] = "";
    int n = jb_parse(body, size, img, lens, MAX_IMAGES, &p, err, sizeof err);
    if (n < 0) {
        if ((n != JB_BAD_REQUEST && n != JB_TOO_MANY && n != JB_BAD_BASE64 && n != JB_TOO_COMPLEX) || !err[0]) abort();
    } else {
        if (n < 1 || n > MAX_IMAGES) abort();
        const uint8_t *end = body;
        for (int i = 0; i < n; i++) {
            if (lens[i] == 0 || img[i] < end || lens[i] > size || img[i] + lens[i] > body + size) abort();
            end = img[i] + lens[i];
        }
        if (strnlen(p.attention, sizeof p.attention) == sizeof p.attention) abort();
    }
    free(body);
    /* the decoder on its own, on the raw bytes, into a buffer of the documented size */
    uint8_t *out = malloc(size * 3 / 4 + 3);
    if (!out) return 0;
    long got = jb_base64_decode((const char *)data, size, out);
    if (got < -1 || got > (long)(size * 3 / 4 + 3)) abort();
    free(out);
    return 0;
}
