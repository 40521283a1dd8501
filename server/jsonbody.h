/* jsonbody.h: images sent as a JSON body (Content-Type: application/json), for clients that
 * cannot send multipart or raw bytes.  Two shapes are accepted:
 *   {"images": ["<base64>", ...], "top_k": 3, "attention": "cls", "normalize": true} (ours)
 *   {"inputs": "<base64>" | ["<base64>", ...], "parameters": {"top_k": 3}}  (Hugging Face's
 *                                                  image-classification request)
 * Each image is standard or URL-safe base64 (padding optional, ASCII whitespace ignored, an
 * optional "data:<type>;base64," prefix).  Images are decoded in place into the body buffer
 * (decoded bytes never outnumber the encoded ones), so the spans point into the body and
 * nothing is allocated beyond cJSON's parse tree.  Unknown keys (top level and inside
 * "parameters") are an error, so a misspelt "image" or "top-k" does not pass silently.
 *
 * Before cJSON builds its tree, one pass over the bytes (no allocation) bounds what the tree can
 * cost: at most JB_MAX_DEPTH nested arrays/objects and JB_MAX_VALUES values (every scalar,
 * string, key and container counts), and nothing but whitespace after the document (a second
 * document or trailing garbage is refused).  So a 20 MB body of numbers costs one scan, not a
 * tree of millions of nodes; the body's size is bounded by the HTTP layer (--max-body-mb). */
#ifndef SRV_JSONBODY_H
#define SRV_JSONBODY_H
#include <stddef.h>
#include <stdint.h>

typedef struct jb_params {
    int top_k;              /* 0: not given; else the integer given (not range-checked here) */
    int top_k_invalid;      /* top_k present but not an integer */
    char attention[16];     /* "": not given */
    int normalize;          /* POST /embed: -1 not given, 0/1 the boolean given, 2 not a boolean */
} jb_params;

#define JB_MAX_DEPTH 8
#define JB_MAX_VALUES 4096

enum { JB_BAD_REQUEST = -1, JB_TOO_MANY = -2, JB_BAD_BASE64 = -3, JB_TOO_COMPLEX = -4 };

/* Parse body (len bytes; overwritten by the decoded images) into at most max images: data[i] /
 * lens[i] point into body.  Returns the count (>= 1), or JB_BAD_REQUEST (not JSON, wrong shape,
 * no image, trailing data), JB_TOO_MANY (more than max), JB_BAD_BASE64 (an image that is not
 * base64 or decodes to nothing) or JB_TOO_COMPLEX (deeper than JB_MAX_DEPTH or more than
 * JB_MAX_VALUES values), with a one-line reason in err. */
int jb_parse(uint8_t *body, size_t len, const uint8_t **data, size_t *lens, int max,
             jb_params *p, char *err, size_t errlen);

/* The JSON parse every JSON request body goes through (jb_parse, the v2 protocol's requests):
 * first a scan that builds nothing (depth at most JB_MAX_DEPTH, at most max_values values,
 * nothing after the document), then the tree of body[0..len); NULL with *status (when not
 * NULL) JB_TOO_COMPLEX or JB_BAD_REQUEST and a one-line reason in err.  Free with cJSON_Delete. */
struct cJSON;
struct cJSON *jb_json_parse(const uint8_t *body, size_t len, long max_values, int *status, char *err,
                            size_t errlen);

/* One base64 image string s (as jb_parse accepts them: a data: URI prefix allowed) decoded into
 * body + *w (the caller's write position: everything before it is taken, and the decoded bytes
 * never outnumber the string's); sets data[idx], lens[idx] and advances *w.  Returns 0, or
 * JB_BAD_REQUEST (not a string) or JB_BAD_BASE64 (bad or empty), with the reason in err. */
int jb_decode_image(const struct cJSON *s, int idx, uint8_t *body, size_t *w, const uint8_t **data,
                    size_t *lens, char *err, size_t errlen);

/* Decode base64 (standard or URL-safe alphabet, '=' padding optional but only at the end,
 * ASCII whitespace skipped) from in[0..n) into out (at least n * 3 / 4 + 3 bytes; out may equal
 * in: the write position never passes the read position).  Returns the decoded length, or -1
 * on a character outside the alphabet, misplaced padding or a dangling single character. */
long jb_base64_decode(const char *in, size_t n, uint8_t *out);

#endif
