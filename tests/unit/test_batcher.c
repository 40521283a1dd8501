/* test_batcher.c: the server's decode + batch pipeline (server/batcher.c) on the tiny-hf
 * fixture, without HTTP: per-image results in order with a corrupt image in the middle of a
 * batch (compaction must not change anyone's result), results equal to a direct vit_forward,
 * attention and features, admission bound (queue full), deadlines, and the head swap (later
 * batches use the new head; results keep the head they ran with); FP16 batch buffers (forced on
 * the CPU: the CUDA path's decode, compaction and vit_forward_f16). */
#include "harness.h"
#include "../../server/batcher.c"
#include "../../server/metrics.c"

#include <stdatomic.h>
#include <unistd.h>

static atomic_int done_count;
static void on_done(srv_job *j, void *arg) { (void)j; (void)arg; atomic_fetch_add(&done_count, 1); }
static void wait_done(int n) { for (int i = 0; i < 5000 && atomic_load(&done_count) < n; i++) usleep(1000); }

int main(void) {
    const char *dir = "tests/fixtures/models/tiny-hf";
    char err[256];
    vit_model *m;
    metrics_init();
    if (vit_model_load(dir, NULL, &m, err, sizeof err) != VIT_OK) { CHECK(0, "load %s: %s", dir, err); return TEST_SUMMARY(); }
    const vit_config *c = vit_model_config(m);
    uint8_t *png, *jpg;
    size_t png_len, jpg_len;
    if (vit_read_file("tests/data/sneaker.png", 1 << 20, &png, &png_len, err, sizeof err) ||
        vit_read_file("tests/data/server/photo.jpg", 1 << 22, &jpg, &jpg_len, err, sizeof err)) {
        CHECK(0, "test images: %s", err);
        return TEST_SUMMARY();
    }
    /* reference logits straight from the engine */
    size_t el = (size_t)3 * c->image_size * c->image_size;
    float *x = malloc(sizeof(float) * 2 * el), ref[2][16];
    vit_image_load(png, png_len, &c->preprocess, VIT_DEFAULT_MAX_PIXELS, x, err, sizeof err);
    vit_image_load(jpg, jpg_len, &c->preprocess, VIT_DEFAULT_MAX_PIXELS, x + el, err, sizeof err);
    vit_session *s;
    vit_session_opts so = {.max_batch = 2, .threads = 1, .device = VIT_DEVICE_CPU};
    vit_session_new(m, &so, &s, err, sizeof err);
    float lg[32];
    vit_outputs o = {.logits = lg};
    vit_forward(s, x, 2, NULL, &o);
    for (int b = 0; b < 2; b++) { memcpy(ref[b], lg + b * c->num_classes, sizeof(float) * c->num_classes); vit_softmax(ref[b], c->num_classes); }
    vit_session_free(s);

    batcher *b;
    batcher_opts bo = {.max_batch = 4, .max_queue = 8, .workers = 1, .threads = 1, .decoders = 2,
                       .max_delay_us = 50000, .max_pixels = VIT_DEFAULT_MAX_PIXELS, .device = VIT_DEVICE_CPU};
    vit_status st = batcher_new(m, &bo, &b, err, sizeof err);
    CHECK(st == VIT_OK, "batcher_new with warm-up (%s)", st ? err : "ok");
    if (st) return TEST_SUMMARY();
    CHECK(batcher_input_type(b) == VIT_INPUT_F32, "cpu sessions: fp32 batch buffers");

    /* one job: png, corrupt, jpg, empty, png -> results in order, bad ones fail alone */
    static const uint8_t junk[] = {0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8};
    srv_job *j = srv_job_new(b, 5, SRV_WANT_ATTN_CLS | SRV_WANT_FEATURES, 3);
    const uint8_t *d[5] = {png, junk, jpg, junk, png};
    size_t l[5] = {png_len, sizeof junk, jpg_len, 0, png_len};
    for (int i = 0; i < 5; i++) { j->items[i].data = d[i]; j->items[i].len = l[i]; }
    j->done = on_done;
    int ra = 0;
    CHECK(batcher_submit(b, j, &ra) == 0, "submit 5 images");
    wait_done(1);
    CHECK(atomic_load(&done_count) == 1, "job done callback ran once");
    CHECK(j->items[0].http == 200 && j->items[2].http == 200 && j->items[4].http == 200, "good images succeed");
    CHECK(j->items[1].http == 400 && j->items[3].http == 400 && !strcmp(j->items[1].code, "invalid_image"),
          "corrupt and empty images fail alone (%d %d)", j->items[1].http, j->items[3].http);
    float got[3], want[3];
    for (int k = 0; k < 3; k++) {
        got[k] = j->items[2].topk_score[k];
        want[k] = ref[1][j->items[2].topk_idx[k]];
    }
    CHECK_CLOSE(got, want, 3, 1e-5, "jpg behind a failed slot: same probabilities as a direct forward");
    int top = 0;
    for (int k = 1; k < c->num_classes; k++) if (ref[0][k] > ref[0][top]) top = k;
    CHECK(j->items[0].topk_idx[0] == top && j->items[4].topk_idx[0] == top &&
          fabsf(j->items[0].topk_score[0] - ref[0][top]) < 1e-5, "png top-1 equals direct forward");
    CHECK(j->items[0].topk_score[0] >= j->items[0].topk_score[1] && j->items[0].topk_score[1] >= j->items[0].topk_score[2], "top-k sorted");
    float asum = 0, fnorm = 0;
    for (int k = 0; k < c->num_patches; k++) asum += j->items[0].attn[k];
    for (int k = 0; k < c->feature_dim; k++) fnorm += fabsf(j->items[0].features[k]);
    CHECK(asum > 0 && asum <= 1.0001f && fnorm > 0, "attention (sum %.3f) and features filled", asum);
    CHECK(j->items[0].batch_size >= 1 && j->items[0].batch_size <= 4, "batch size within max_batch (%d)", j->items[0].batch_size);
    srv_job_free(j);

    /* admission: 9 images > max_queue 8 -> refused whole, with a Retry-After */
    srv_job *big = srv_job_new(b, 9, 0, 1);
    for (int i = 0; i < 9; i++) { big->items[i].data = png; big->items[i].len = png_len; }
    ra = 0;
    int rs = batcher_submit(b, big, &ra);
    CHECK(rs == 503 && ra >= 1, "job larger than the queue refused (Retry-After %d)", ra);
    srv_job_free(big);
    CHECK(batcher_queue_depth(b) == 0, "queue depth back to 0");

    /* deadline already passed -> 504, not computed */
    srv_job *late = srv_job_new(b, 1, 0, 1);
    late->items[0].data = png; late->items[0].len = png_len;
    late->done = on_done;
    late->deadline = vit_now() - 1;   /* submit sets t_submit; deadline stays in the past */
    batcher_submit(b, late, NULL);
    wait_done(2);
    CHECK(late->items[0].http == 504 && !strcmp(late->items[0].code, "deadline_exceeded"), "expired deadline -> 504");
    srv_job_free(late);

    /* preprocessed pixels (the v2 protocol's pixel_values) + every probability: the same
     * probabilities as the direct forward of those pixels; a wrong-sized tensor fails alone */
    srv_job *jp = srv_job_new(b, 3, SRV_WANT_PROBS, 1);
    CHECK(jp && jp->probs_cap == c->num_classes && jp->items[0].probs, "SRV_WANT_PROBS: room for the head's classes");
    for (int i = 0; i < 3; i++) { jp->items[i].pixels = 1; jp->items[i].data = (const uint8_t *)(x + (size_t)(i & 1) * el); jp->items[i].len = el * sizeof(float); }
    jp->items[2].len -= 4;
    jp->done = on_done;
    batcher_submit(b, jp, NULL);
    wait_done(3);
    CHECK(jp->items[0].http == 200 && jp->items[1].http == 200 && jp->items[0].nprobs == c->num_classes,
          "pixel items run (%d %d)", jp->items[0].http, jp->items[1].http);
    CHECK_CLOSE(jp->items[0].probs, ref[0], (size_t)c->num_classes, 1e-5, "pixels of the png: every probability == direct forward");
    CHECK_CLOSE(jp->items[1].probs, ref[1], (size_t)c->num_classes, 1e-5, "pixels of the jpg: every probability == direct forward");
    CHECK(jp->items[2].http == 400 && !strcmp(jp->items[2].code, "invalid_image"), "pixel tensor of the wrong size: 400 alone");
    srv_job_free(jp);

    /* head swap: a head with 2 classes that always prefers class 1 */
    int D = c->feature_dim;
    float *w = calloc((size_t)2 * D, sizeof(float)), hb[2] = {0.f, 5.f};
    const char *labels[2] = {"zero", "one"};
    vit_head *h;
    CHECK(vit_head_new(2, D, w, hb, labels, &h) == VIT_OK, "new head");
    vit_head *old = batcher_get_head(b);
    batcher_set_head(b, h);
    vit_head_release(h);                    /* the batcher keeps its own reference */
    srv_job *j2 = srv_job_new(b, 1, 0, 5);
    j2->items[0].data = png; j2->items[0].len = png_len;
    j2->done = on_done;
    batcher_submit(b, j2, NULL);
    wait_done(4);
    CHECK(j2->items[0].http == 200 && j2->items[0].k == 2 && j2->items[0].topk_idx[0] == 1 &&
          !strcmp(vit_head_label(j2->items[0].head, 0), "zero") && !strcmp(vit_head_label(j2->items[0].head, 1), "one"),
          "after the swap: 2 classes, label 'one' first (k=%d)", j2->items[0].k);
    batcher_set_head(b, old);               /* swap back; j2 still holds the 2-class head */
    vit_head_release(old);
    CHECK(vit_head_num_classes(j2->items[0].head) == 2, "a result keeps the head it ran with after a later swap");
    srv_job_free(j2);
    vit_head *now = batcher_get_head(b);
    CHECK(vit_head_num_classes(now) == c->num_classes, "swapped back to the model's head");
    vit_head_release(now);
    free(w);

    batcher_free(b);

    /* FP16 batch buffers (what CUDA sessions get; forced here on the CPU): each decoder
     * preprocesses into its scratch and converts into the slot, compaction moves 2-byte pixels,
     * the forward is vit_forward_f16.  Results: those of a direct vit_forward_f16 on the same
     * tensors rounded to FP16 */
    {
        uint16_t *xh = malloc(sizeof(uint16_t) * 2 * el);
        float ref16[2][16];
        vit_f32_to_f16(x, xh, 2 * el);
        vit_session_new(m, &so, &s, err, sizeof err);
        vit_forward_f16(s, xh, 2, NULL, &o);
        for (int k = 0; k < 2; k++) { memcpy(ref16[k], lg + k * c->num_classes, sizeof(float) * c->num_classes); vit_softmax(ref16[k], c->num_classes); }
        vit_session_free(s);
        batcher_opts bo16 = bo;
        bo16.input_f16 = 1;
        batcher *b16;
        st = batcher_new(m, &bo16, &b16, err, sizeof err);
        CHECK(st == VIT_OK && batcher_input_type(b16) == VIT_INPUT_F16,
              "batcher with fp16 batch buffers (%s)", st ? err : "ok");
        if (st == VIT_OK) {
            srv_job *jh = srv_job_new(b16, 5, 0, 3);
            for (int i = 0; i < 5; i++) { jh->items[i].data = d[i]; jh->items[i].len = l[i]; }
            jh->done = on_done;
            int before = atomic_load(&done_count);
            CHECK(batcher_submit(b16, jh, NULL) == 0, "fp16: submit 5 images");
            wait_done(before + 1);
            CHECK(jh->items[0].http == 200 && jh->items[2].http == 200 && jh->items[4].http == 200 &&
                      jh->items[1].http == 400 && jh->items[3].http == 400,
                  "fp16: good images succeed, corrupt ones fail alone");
            float g16[3], w16[3], g0[3], w0[3];
            for (int k = 0; k < 3; k++) {
                g16[k] = jh->items[2].topk_score[k];
                w16[k] = ref16[1][jh->items[2].topk_idx[k]];
                g0[k] = jh->items[0].topk_score[k];
                w0[k] = ref16[0][jh->items[0].topk_idx[k]];
            }
            CHECK_CLOSE(g16, w16, 3, 1e-5, "fp16: jpg behind a failed slot == direct vit_forward_f16");
            CHECK_CLOSE(g0, w0, 3, 1e-5, "fp16: png == direct vit_forward_f16");
            srv_job_free(jh);
            /* preprocessed FP32 pixels into FP16 batch buffers: converted like a decoded image */
            srv_job *jp16 = srv_job_new(b16, 2, SRV_WANT_PROBS, 1);
            for (int i = 0; i < 2; i++) {
                jp16->items[i].pixels = 1;
                jp16->items[i].data = (const uint8_t *)(x + (size_t)i * el);
                jp16->items[i].len = el * sizeof(float);
            }
            jp16->done = on_done;
            before = atomic_load(&done_count);
            batcher_submit(b16, jp16, NULL);
            wait_done(before + 1);
            CHECK(jp16->items[0].http == 200 && jp16->items[1].http == 200, "fp16: pixel items run");
            CHECK_CLOSE(jp16->items[0].probs, ref16[0], (size_t)c->num_classes, 1e-5, "fp16: png pixels, every probability == direct vit_forward_f16");
            CHECK_CLOSE(jp16->items[1].probs, ref16[1], (size_t)c->num_classes, 1e-5, "fp16: jpg pixels, every probability == direct vit_forward_f16");
            srv_job_free(jp16);
            batcher_free(b16);
        }
        free(xh);
    }
    vit_model_free(m);
    free(x); free(png); free(jpg);
    return TEST_SUMMARY();
}
