/* fuzz_v2proto.c: libFuzzer harness for Open Inference Protocol inference requests
 * (server/v2proto.c: v2_parse_infer, JSON through jsonbody's parser, Triton's binary tensor
 * data) and the response writer.  Input: one byte selecting the Inference-Header-Content-Length
 * (0: absent; else the next two bytes, little-endian, capped at the body), then the body, copied
 * into an allocation of exactly its size (base64 images are decoded in place into it).  An
 * accepted request must have 1..max images, each span inside the body or the request's own
 * pixel buffer, pixel spans of exactly 3*H*W floats, 1..3 outputs in order without repeats,
 * classification only on probabilities and within range; its response must be written with
 * the binary outputs after the JSON at the sizes the JSON states. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/jsonbody.c"
#include "../../server/v2proto.c"

#define MAX_IMAGES 4

static void check_request(const v2_request *rq, const v2_model *m, const uint8_t *body, size_t size,
                          const uint8_t **data, const size_t *lens) {
    if (rq->n < 1 || rq->n > m->max_images || rq->nout < 1 || rq->nout > V2_NOUT) abort();
    size_t per = (size_t)3 * (size_t)m->height * (size_t)m->width * sizeof(float);
    for (int i = 0; i < rq->n; i++) {
        const uint8_t *p = data[i];
        int in_body = p >= body && lens[i] <= size && p + lens[i] <= body + size;
        int in_pix = rq->pixel_buf && p >= (const uint8_t *)rq->pixel_buf &&
                     p + lens[i] <= (const uint8_t *)rq->pixel_buf + per * (size_t)rq->n;
        if (lens[i] == 0 || !(in_body || in_pix) || (rq->pixels && lens[i] != per)) abort();
    }
    int seen[V2_NOUT] = {0};
    for (int o = 0; o < rq->nout; o++) {
        int w = rq->order[o];
        if (w < 0 || w >= V2_NOUT || seen[w]++ || !rq->out[w].want) abort();
    }
    const v2_output_req *pr = &rq->out[V2_OUT_PROBS];
    if (pr->classification < 0 || pr->classification > m->max_classification) abort();
}

static void check_response(const v2_request *rq, const v2_model *m) {
    static float f[MAX_IMAGES * 64];
    static const char *strs[MAX_IMAGES * 3];
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) f[i] = (float)i * 0.37f - 3.0f;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) strs[i] = i & 1 ? "0.5:1:label \"x\"" : "";
    v2_tensor t[V2_NOUT];
    for (int o = 0; o < rq->nout; o++) {
        int w = rq->order[o], k = rq->out[w].classification;
        t[o] = (v2_tensor){.name = v2_output_name(w), .ndim = 2, .shape = {rq->n, w == V2_OUT_PROBS ? m->num_classes : 16},
                           .f32 = f, .binary = rq->out[w].binary};
        if (w == V2_OUT_PROBS && k) { t[o].bytes = 1; t[o].shape[1] = k; t[o].strs = strs; }
    }
    size_t len = 0, hl = 0;
    char *out = v2_write_response("m", "1", rq, t, rq->nout, &len, &hl);
    if (!out) return;
    if (hl > len || out[len] != '\0') abort();
    cJSON *root = cJSON_ParseWithLength(out, hl);
    if (!root) abort();
    size_t bin = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItem(root, "outputs")) {
        const cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "parameters"), "binary_data_size");
        if (b) bin += (size_t)b->valuedouble;
    }
    if (hl + bin != len) abort();
    cJSON_Delete(root);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    long long hl = -1;
    size_t skip = 1;
    if (data[0] && size >= 3) {
        hl = data[1] | data[2] << 8;
        skip = 3;
    }
    size -= skip;
    uint8_t *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data + skip, size);
    if (hl > (long long)size) hl = (long long)size;
    const v2_model m = {.height = 2, .width = 2, .num_classes = 3, .max_images = MAX_IMAGES, .max_classification = 3};
    const uint8_t *img[MAX_IMAGES];
    size_t lens[MAX_IMAGES];
    v2_request rq;
    char err[300] = "";
    int rc = v2_parse_infer(body, size, hl, &m, img, lens, &rq, err, sizeof err);
    if (rc == 0) {
        check_request(&rq, &m, body, size, img, lens);
        check_response(&rq, &m);
        v2_request_free(&rq);
    } else if (rc != -1 || !err[0] || rq.pixel_buf) {
        abort();
    }
    free(body);
    return 0;
}
