/* multipart.h: a bounded multipart/form-data parser (RFC 7578 / RFC 2046) over a body that is
 * already in memory (the HTTP layer bounds the body by --max-body-mb before calling it).
 * Parts reference the body; nothing is copied or allocated.  Hostile input (no or bad boundary,
 * missing close delimiter, oversized headers, too many parts, header lines without ':') fails
 * with a one-line reason, never a crash. */
#ifndef SRV_MULTIPART_H
#define SRV_MULTIPART_H
#include <stddef.h>
#include <stdint.h>

#define MP_MAX_BOUNDARY 70        /* RFC 2046 */
#define MP_MAX_HEADER_BYTES 8192  /* per part: all header lines together */
#define MP_NAME_MAX 64

typedef struct mp_part {
    char name[MP_NAME_MAX];       /* Content-Disposition name="..." (truncated to fit) */
    char filename[MP_NAME_MAX];   /* filename="..." or "" */
    char content_type[MP_NAME_MAX];
    const uint8_t *data;          /* into the body */
    size_t len;
} mp_part;

/* Boundary from a Content-Type header value ("multipart/form-data; boundary=xyz", quoted or
 * not).  Returns 0 and writes the NUL-terminated boundary into out (>= MP_MAX_BOUNDARY + 1
 * bytes), or -1 when the type is not multipart/form-data or the boundary is missing/invalid. */
int mp_boundary(const char *content_type, char *out, size_t outlen);

/* Parse body into at most max_parts parts.  Returns the number of parts (>= 0), or -1 with a
 * reason in err (malformed, truncated, too many parts, header too large). */
int mp_parse(const uint8_t *body, size_t len, const char *boundary, mp_part *parts,
             int max_parts, char *err, size_t errlen);

#endif
