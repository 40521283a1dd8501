/* test_v2proto.c: Open Inference Protocol requests and responses (server/v2proto.c): the spec's
 * own example requests (KServe's required_api.md, Triton's binary data and classification
 * extension docs) answered with the right errors for this model, base64 and binary image
 * tensors, FP32 pixel tensors nested and flat, every bound (shape, batch, datatype, binary
 * sizes, header length, nesting), requested outputs and their parameters, and the response
 * writer: JSON floats that read back exactly, binary outputs at the right offsets. */
#include "harness.h"
#include "../../server/jsonbody.c"
#include "../../server/v2proto.c"

#include <stdlib.h>

static const v2_model M = {.height = 4, .width = 4, .num_classes = 3, .max_images = 4, .max_classification = 3};
static const uint8_t *g_data[8];
static size_t g_len[8];
static char g_err[256];
static uint8_t *g_body;

/* parse a copy (the parser decodes in place); header_len -1: all JSON */
static int parse_n(const void *body, size_t n, long long header_len, v2_request *rq) {
    free(g_body);
    g_body = malloc(n + 1);
    memcpy(g_body, body, n);
    g_err[0] = '\0';
    return v2_parse_infer(g_body, n, header_len, &M, g_data, g_len, rq, g_err, sizeof g_err);
}
static int parse(const char *json, v2_request *rq) { return parse_n(json, strlen(json), -1, rq); }

/* the request an error names: rc -1 and the message contains want */
static void expect_error(const char *json, const char *want, const char *name) {
    v2_request rq;
    int rc = parse(json, &rq);
    CHECK(rc == -1 && strstr(g_err, want), "%s: %s", name, g_err);
}

static void spec_examples(void) {
    /* KServe required_api.md, "Inference Request Examples" */
    expect_error("{\"id\":\"42\",\"inputs\":[{\"name\":\"input0\",\"shape\":[2,2],\"datatype\":\"UINT32\",\"data\":[1,2,3,4]},"
                 "{\"name\":\"input1\",\"shape\":[3],\"datatype\":\"BOOL\",\"data\":[true]}],\"outputs\":[{\"name\":\"output0\"}]}",
                 "expected 1 input", "kserve example: two inputs");
    /* Triton extension_classification.md */
    expect_error("{\"id\":\"42\",\"inputs\":[{\"name\":\"input0\",\"shape\":[2,2],\"datatype\":\"UINT32\",\"data\":[1,2,3,4]}],"
                 "\"outputs\":[{\"name\":\"output0\",\"parameters\":{\"classification\":2}}]}",
                 "unexpected inference input 'input0'", "triton classification example: unknown input");
    /* the same with this model's names */
    v2_request rq;
    int rc = parse("{\"id\":\"42\",\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"iVBORw==\"]}],"
                   "\"outputs\":[{\"name\":\"probabilities\",\"parameters\":{\"classification\":2}}]}", &rq);
    CHECK(rc == 0 && rq.has_id && !strcmp(rq.id, "42") && rq.n == 1 && g_len[0] == 4 && !memcmp(g_data[0], "\x89PNG", 4) &&
          rq.out[V2_OUT_PROBS].want && rq.out[V2_OUT_PROBS].classification == 2 && !rq.out[V2_OUT_EMBEDDING].want,
          "classification request with this model's names (%s)", g_err);
}

static void image_inputs(void) {
    v2_request rq;
    int rc = parse("{\"inputs\":[{\"name\":\"image\",\"shape\":[2,1],\"datatype\":\"BYTES\",\"data\":[[\"AAE=\"],[\"AgME\"]]}]}", &rq);
    CHECK(rc == 0 && rq.n == 2 && g_len[0] == 2 && g_len[1] == 3 && g_data[1][2] == 4 && !rq.has_id &&
          rq.out[0].want && rq.out[1].want && rq.out[2].want && !rq.out[0].binary,
          "BYTES [2,1] nested base64; no outputs: all of them, JSON (%s)", g_err);
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[3],\"datatype\":\"BYTES\",\"data\":[\"AAE=\",\"AAE=\"]}]}",
                 "exactly 3", "fewer elements than the shape");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"AAE=\",\"AAE=\"]}]}",
                 "exactly 1", "more elements than the shape");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"@@@\"]}]}",
                 "not valid base64", "bad base64");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[7]}]}",
                 "not a base64 string", "number in a BYTES tensor");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}",
                 "datatype must be BYTES", "image as FP32");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[5],\"datatype\":\"BYTES\",\"data\":[\"AA\",\"AA\",\"AA\",\"AA\",\"AA\"]}]}",
                 "batch size 5 outside [1, 4]", "batch over max_images");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[0],\"datatype\":\"BYTES\",\"data\":[]}]}",
                 "batch size 0", "empty batch");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[1,2],\"datatype\":\"BYTES\",\"data\":[\"AA\",\"AA\"]}]}",
                 "shape must be [N] or [N, 1]", "shape [1,2]");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[-1],\"datatype\":\"BYTES\",\"data\":[\"AA\"]}]}",
                 "non-negative integers", "negative dimension");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[1.5],\"datatype\":\"BYTES\",\"data\":[\"AA\"]}]}",
                 "non-negative integers", "fractional dimension");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[[[[[[[\"AA\"]]]]]]]}]}",
                 "nested deeper than", "nesting past the limit (the JSON pre-scan)");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"data\":[\"AA\"]}]}", "\"shape\" must be", "no shape");
    expect_error("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\"}]}",
                 "either \"data\" or", "neither data nor binary_data_size");
    expect_error("{\"inputs\":[]}", "non-empty array", "no inputs");
    expect_error("{\"inputs\":{}}", "non-empty array", "inputs not an array");
    expect_error("[1]", "JSON object", "array root");
    expect_error("{\"inputs\":", "not valid JSON", "truncated JSON");
    expect_error("{\"id\":5,\"inputs\":[]}", "\"id\" must be a string", "id not a string");
    expect_error("{\"parameters\":{\"x\":[1]},\"inputs\":[]}", "must be a string, number or boolean", "array parameter");
}

/* a binary request: JSON header then the bytes */
static int parse_bin(const char *json, const void *bin, size_t nbin, v2_request *rq) {
    size_t jl = strlen(json);
    uint8_t *b = malloc(jl + nbin);
    memcpy(b, json, jl);
    memcpy(b + jl, bin, nbin);
    int rc = parse_n(b, jl + nbin, (long long)jl, rq);
    free(b);
    return rc;
}

static void binary_inputs(void) {
    const uint8_t bin[] = {3, 0, 0, 0, 'a', 'b', 'c', 1, 0, 0, 0, 'z'};
    v2_request rq;
    int rc = parse_bin("{\"inputs\":[{\"name\":\"image\",\"shape\":[2],\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\":12}}],"
                       "\"outputs\":[{\"name\":\"embedding\",\"parameters\":{\"binary_data\":true,\"normalize\":true}}]}",
                       bin, sizeof bin, &rq);
    CHECK(rc == 0 && rq.n == 2 && g_len[0] == 3 && !memcmp(g_data[0], "abc", 3) && g_len[1] == 1 && g_data[1][0] == 'z' &&
          rq.out[V2_OUT_EMBEDDING].binary && rq.out[V2_OUT_EMBEDDING].normalize && !rq.out[V2_OUT_PROBS].want,
          "binary BYTES: two length-prefixed elements (%s)", g_err);
    rc = parse_bin("{\"inputs\":[{\"name\":\"image\",\"shape\":[2],\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\":12}}]}",
                   bin, 11, &rq);
    CHECK(rc == -1 && strstr(g_err, "binary_data_size 12, but 11"), "binary size disagrees with the body: %s", g_err);
    rc = parse_bin("{\"inputs\":[{\"name\":\"image\",\"shape\":[3],\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\":12}}]}",
                   bin, 12, &rq);
    CHECK(rc == -1 && strstr(g_err, "ends before element 2"), "fewer binary elements than the shape: %s", g_err);
    const uint8_t lie[] = {0xff, 0xff, 0xff, 0x7f, 'a'};
    rc = parse_bin("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\":5}}]}",
                   lie, sizeof lie, &rq);
    CHECK(rc == -1 && strstr(g_err, "runs past"), "element length past the data: %s", g_err);
    rc = parse_bin("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\":12}}]}",
                   bin, 12, &rq);
    CHECK(rc == -1 && strstr(g_err, "bytes of binary data after"), "binary bytes past the shape's elements: %s", g_err);
    rc = parse_bin("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"AA\"]}]}", bin, 3, &rq);
    CHECK(rc == -1 && strstr(g_err, "no input has binary_data_size"), "trailing bytes with JSON data: %s", g_err);
    const char *j = "{\"inputs\":[]}";
    rc = parse_n(j, strlen(j), (long long)strlen(j) + 1, &rq);
    CHECK(rc == -1 && strstr(g_err, "Inference-Header-Content-Length"), "header length past the body: %s", g_err);
    rc = parse_n(j, strlen(j), 0, &rq);
    CHECK(rc == -1 && strstr(g_err, "Inference-Header-Content-Length"), "header length 0: %s", g_err);
}

static void pixel_inputs(void) {
    float px[2 * 3 * 16];
    for (int i = 0; i < 2 * 48; i++) px[i] = (float)i * 0.25f - 3.0f;
    v2_request rq;
    int rc = parse_bin("{\"inputs\":[{\"name\":\"pixel_values\",\"shape\":[2,3,4,4],\"datatype\":\"FP32\","
                       "\"parameters\":{\"binary_data_size\":384}}],\"parameters\":{\"binary_data_output\":true}}",
                       px, sizeof px, &rq);
    float back[48];
    if (rc == 0) memcpy(back, g_data[1], sizeof back);
    CHECK(rc == 0 && rq.pixels && rq.n == 2 && g_len[1] == 48 * sizeof(float) && !memcmp(back, px + 48, sizeof back) &&
          rq.out[V2_OUT_ATTENTION].binary && rq.out[V2_OUT_PROBS].binary, "binary FP32 [2,3,4,4] + binary_data_output (%s)", g_err);
    v2_request_free(&rq);
    /* JSON, nested by channel and row, then flat */
    char json[4096];
    int w = snprintf(json, sizeof json, "{\"inputs\":[{\"name\":\"pixel_values\",\"shape\":[1,3,4,4],\"datatype\":\"FP32\",\"data\":[[");
    for (int c = 0; c < 3; c++) {
        w += snprintf(json + w, sizeof json - (size_t)w, "%s[", c ? "," : "");
        for (int y = 0; y < 4; y++) {
            w += snprintf(json + w, sizeof json - (size_t)w, "%s[", y ? "," : "");
            for (int x = 0; x < 4; x++) w += snprintf(json + w, sizeof json - (size_t)w, "%s%.9g", x ? "," : "", (double)px[c * 16 + y * 4 + x]);
            w += snprintf(json + w, sizeof json - (size_t)w, "]");
        }
        w += snprintf(json + w, sizeof json - (size_t)w, "]");
    }
    snprintf(json + w, sizeof json - (size_t)w, "]]}]}");
    rc = parse(json, &rq);
    CHECK(rc == 0 && rq.pixels && rq.n == 1 && rq.pixel_buf && !memcmp(g_data[0], px, 48 * sizeof(float)),
          "JSON FP32 nested [1][3][4][4] reads back exactly (%s)", g_err);
    v2_request_free(&rq);
    expect_error("{\"inputs\":[{\"name\":\"pixel_values\",\"shape\":[1,3,4,5],\"datatype\":\"FP32\",\"data\":[0]}]}",
                 "shape must be [N, 3, 4, 4]", "wrong H, W");
    expect_error("{\"inputs\":[{\"name\":\"pixel_values\",\"shape\":[1,3,4,4],\"datatype\":\"FP16\",\"data\":[0]}]}",
                 "datatype must be FP32", "FP16 pixels");
    expect_error("{\"inputs\":[{\"name\":\"pixel_values\",\"shape\":[1,3,4,4],\"datatype\":\"FP32\",\"data\":[0,1]}]}",
                 "exactly 48 numbers", "too few numbers");
    expect_error("{\"inputs\":[{\"name\":\"pixel_values\",\"shape\":[1,3,4,4],\"datatype\":\"FP32\",\"data\":[\"x\"]}]}",
                 "not a finite FP32", "string in FP32 data");
    expect_error("{\"inputs\":[{\"name\":\"pixel_values\",\"shape\":[1,3,4,4],\"datatype\":\"FP32\",\"data\":[1e39]}]}",
                 "not a finite FP32", "number past FP32's range");
    float nan_px[48] = {0};
    nan_px[17] = NAN;
    rc = parse_bin("{\"inputs\":[{\"name\":\"pixel_values\",\"shape\":[1,3,4,4],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":192}}]}",
                   nan_px, sizeof nan_px, &rq);
    CHECK(rc == -1 && strstr(g_err, "element 17 is not finite"), "NaN in binary FP32: %s", g_err);
    rc = parse_bin("{\"inputs\":[{\"name\":\"pixel_values\",\"shape\":[1,3,4,4],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":100}}]}",
                   px, 100, &rq);
    CHECK(rc == -1 && strstr(g_err, "the shape needs 192"), "binary FP32 of the wrong size: %s", g_err);
}

static void outputs(void) {
    const char *in = "{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"AA\"]}],";
    char j[512];
    v2_request rq;
    snprintf(j, sizeof j, "%s\"outputs\":[{\"name\":\"attention\",\"parameters\":{\"mode\":\"rollout\"}},{\"name\":\"probabilities\"}]}", in);
    int rc = parse(j, &rq);
    CHECK(rc == 0 && rq.out[V2_OUT_ATTENTION].want && rq.out[V2_OUT_ATTENTION].rollout && rq.out[V2_OUT_PROBS].want &&
          !rq.out[V2_OUT_EMBEDDING].want && rq.nout == 2 && rq.order[0] == V2_OUT_ATTENTION && rq.order[1] == V2_OUT_PROBS,
          "attention rollout + probabilities, in the request's order (%s)", g_err);
    struct { const char *outs, *want, *name; } bad[] = {
        {"[{\"name\":\"logits\"}]", "unexpected inference output 'logits'", "unknown output"},
        {"[{\"name\":\"embedding\"},{\"name\":\"embedding\"}]", "requested twice", "output twice"},
        {"[{\"name\":\"probabilities\",\"parameters\":{\"classification\":4}}]", "[1, 3]", "classification over the classes"},
        {"[{\"name\":\"probabilities\",\"parameters\":{\"classification\":0}}]", "[1, 3]", "classification 0"},
        {"[{\"name\":\"embedding\",\"parameters\":{\"classification\":1}}]", "on probabilities only", "classification of embedding"},
        {"[{\"name\":\"probabilities\",\"parameters\":{\"binary_data\":1}}]", "must be a boolean", "binary_data not a boolean"},
        {"[{\"name\":\"probabilities\",\"parameters\":{\"normalize\":true}}]", "of embedding", "normalize of probabilities"},
        {"[{\"name\":\"attention\",\"parameters\":{\"mode\":\"max\"}}]", "\"cls\" or \"rollout\"", "unknown attention mode"},
        {"[]", "non-empty array", "empty outputs"},
        {"[3]", "object with a \"name\"", "output not an object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(j, sizeof j, "%s\"outputs\":%s}", in, bad[i].outs);
        expect_error(j, bad[i].want, bad[i].name);
    }
}

static void response(void) {
    const float probs[6] = {0.1f, 0.2f, 0.7f, 1e-30f, 0.333333343f, 0.666666687f};
    const float emb[4] = {1.5f, -2.25f, 3.0e-7f, 12345.678f};
    const char *cls[2] = {"0.7:2:Sneaker", "0.666666687:2"};
    v2_request rq = {.has_id = 1};
    strcpy(rq.id, "req-1");
    v2_tensor t[3] = {
        {.name = "probabilities", .ndim = 2, .shape = {2, 3}, .f32 = probs},
        {.name = "embedding", .ndim = 2, .shape = {2, 2}, .f32 = emb, .binary = 1},
        {.name = "probabilities", .bytes = 1, .ndim = 2, .shape = {2, 1}, .strs = cls, .binary = 1},
    };
    size_t len = 0, hl = 0;
    char *body = v2_write_response("fashion-vit", "1", &rq, t, 3, &len, &hl);
    cJSON *root = body ? cJSON_ParseWithLength(body, hl) : NULL;
    const cJSON *outs = cJSON_GetObjectItem(root, "outputs");
    const cJSON *d0 = cJSON_GetObjectItem(cJSON_GetArrayItem(outs, 0), "data");
    int exact = cJSON_GetArraySize(d0) == 6;
    for (int i = 0; exact && i < 6; i++) exact = (float)cJSON_GetArrayItem(d0, i)->valuedouble == probs[i];
    CHECK(root && exact && !strcmp(cJSON_GetObjectItem(root, "id")->valuestring, "req-1") &&
          !strcmp(cJSON_GetObjectItem(root, "model_name")->valuestring, "fashion-vit") &&
          !strcmp(cJSON_GetObjectItem(root, "model_version")->valuestring, "1"),
          "JSON FP32 outputs read back as the same floats; id and model echoed");
    const cJSON *p1 = cJSON_GetObjectItem(cJSON_GetArrayItem(outs, 1), "parameters");
    const cJSON *p2 = cJSON_GetObjectItem(cJSON_GetArrayItem(outs, 2), "parameters");
    size_t want_bin = sizeof emb + 4 + strlen(cls[0]) + 4 + strlen(cls[1]);
    CHECK(p1 && p2 && cJSON_GetObjectItem(p1, "binary_data_size")->valuedouble == 16 &&
          cJSON_GetObjectItem(p2, "binary_data_size")->valuedouble == (double)(want_bin - 16) &&
          !cJSON_GetObjectItem(cJSON_GetArrayItem(outs, 1), "data") && len == hl + want_bin,
          "binary outputs: binary_data_size, no data, body = header + %zu bytes", want_bin);
    float eback[4];
    if (body && len == hl + want_bin) memcpy(eback, body + hl, sizeof eback);
    uint32_t l0 = 0;
    if (body && len == hl + want_bin) memcpy(&l0, body + hl + 16, 4);
    CHECK(body && len == hl + want_bin && !memcmp(eback, emb, sizeof emb) && l0 == strlen(cls[0]) &&
          !memcmp(body + hl + 20, cls[0], l0), "binary FP32 bytes, then BYTES length-prefixed");
    cJSON_Delete(root);
    free(body);
    char s[64];
    v2_class_string(s, sizeof s, 0.5f, 7, "Sneaker");
    CHECK(!strcmp(s, "0.5:7:Sneaker"), "classification string with label: %s", s);
    v2_class_string(s, sizeof s, 0.25f, 3, "");
    CHECK(!strcmp(s, "0.25:3"), "classification string without label: %s", s);
}

int main(void) {
    spec_examples();
    image_inputs();
    binary_inputs();
    pixel_inputs();
    outputs();
    response();
    free(g_body);
    return TEST_SUMMARY();
}
