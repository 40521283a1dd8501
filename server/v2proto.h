/* v2proto.h: the Open Inference Protocol (KServe v2 / Triton HTTP) inference request and
 * response, apart from the transport: parse a request body (JSON, or JSON followed by binary
 * tensor data per Triton's binary tensor data extension) into what vitd runs, and write the
 * response (JSON, plus binary outputs after it when asked).
 *
 * vitd's model as a v2 model:
 *   inputs   image          BYTES [-1]         encoded JPEG/PNG, one element per image (JSON:
 *                                              base64 strings; binary: 4-byte little-endian
 *                                              length + bytes per element); [-1, 1] accepted
 *            pixel_values   FP32  [-1,3,H,W]   already preprocessed (the model's H, W)
 *   outputs  probabilities  FP32  [-1,classes] softmax; "classification": k (Triton's
 *                                              classification extension) makes it BYTES [-1,k]
 *                                              of "score:index:label"
 *            embedding      FP32  [-1,dim]     the pooled feature vector the head sees;
 *                                              parameter "normalize": true for unit L2 norm
 *            attention      FP32  [-1,gh,gw]   last-layer CLS attention over the patches,
 *                                              parameter "mode": "rollout" for the rollout
 * Exactly one input per request.  Without "outputs", every output is returned.  Parameters:
 * request "binary_data_output", output "binary_data" (binary outputs), input "binary_data_size".
 * Nothing here allocates per element beyond the FP32 input array; image bytes stay in the body. */
#ifndef SRV_V2PROTO_H
#define SRV_V2PROTO_H
#include <stddef.h>
#include <stdint.h>

#define V2_ID_MAX 256          /* longest request "id" echoed back */

enum { V2_OUT_PROBS = 0, V2_OUT_EMBEDDING, V2_OUT_ATTENTION, V2_NOUT };
const char *v2_output_name(int which);   /* "probabilities", "embedding", "attention" */

/* what the parser checks a request against (the served model) */
typedef struct v2_model {
    int height, width;         /* pixel_values' H, W */
    int num_classes;           /* of the active head */
    int max_images;            /* largest batch dimension a request may have */
    int max_classification;    /* largest "classification" count */
} v2_model;

typedef struct v2_output_req {
    int want;                  /* 1 when returned */
    int binary;                /* binary_data */
    int classification;        /* 0: the FP32 tensor; k: top-k strings (probabilities only) */
    int normalize;             /* embedding: L2-normalized */
    int rollout;               /* attention: rollout instead of the last layer's CLS row */
} v2_output_req;

typedef struct v2_request {
    char id[V2_ID_MAX + 1];
    int has_id;
    int n;                     /* images in the batch */
    int pixels;                /* 1: pixel_values (FP32); 0: image (BYTES) */
    const uint8_t **data;      /* (n) caller's arrays: the image bytes (in the body) or, for */
    size_t *len;               /* pixels, each image's 3*H*W little-endian floats */
    float *pixel_buf;          /* malloc'd when pixel_values came as JSON numbers: free it */
    v2_output_req out[V2_NOUT];
    int order[V2_NOUT];        /* the wanted outputs in the order the request named them */
    int nout;
} v2_request;

/* Parse body[0..len) (changed: base64 images are decoded in place).  header_len: the value of
 * Inference-Header-Content-Length, or -1 when absent (the whole body is JSON).  data/len: arrays
 * of at least m->max_images entries that rq->data/len will point to.  Returns 0, or -1 with a
 * one-line reason in err (the caller answers 400 {"error": err}). */
int v2_parse_infer(uint8_t *body, size_t len, long long header_len, const v2_model *m,
                   const uint8_t **data, size_t *lens, v2_request *rq, char *err, size_t errlen);
void v2_request_free(v2_request *rq);   /* frees pixel_buf; the request itself is the caller's */

/* One output tensor of the response. */
typedef struct v2_tensor {
    const char *name;
    int bytes;                 /* 1: BYTES (strs), 0: FP32 (f32) */
    int ndim;
    int64_t shape[4];
    const float *f32;          /* (prod(shape)) */
    const char *const *strs;   /* (prod(shape)) NUL-terminated */
    int binary;                /* after the JSON, binary_data_size in its parameters */
} v2_tensor;

/* The response body: {"model_name", "model_version", "id"?, "outputs": [...]} then the binary
 * outputs in order.  *header_len: the JSON's length (== *len when nothing is binary).  Returns a
 * malloc'd body of *len + 1 bytes (the last a NUL), or NULL when out of memory. */
char *v2_write_response(const char *model_name, const char *model_version, const v2_request *rq,
                        const v2_tensor *outs, int nout, size_t *len, size_t *header_len);

/* n floats as a JSON array text, each the shortest decimal that reads back as the same float
 * (malloc'd, NUL-terminated; NULL when out of memory). */
char *v2_f32_array_json(const float *v, size_t n);

/* "<score>:<index>:<label>" (":<label>" left out when label is NULL or empty) into buf. */
void v2_class_string(char *buf, size_t n, float score, int index, const char *label);

#endif
