/* test_head_train.c: head-level training and head files: the starting head of the replace
 * and extend label modes, vit_head_train, head files (save/load round trip; truncated, corrupt
 * and hostile files rejected cleanly), and model directories written with a new head
 * (vit_model_save_with_head) for every naming scheme: the written directory loads again and its
 * logits equal features @ W^T + b of the new head. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "io/safetensors_write.h"
#include "util.h"

static char tmpdir[] = "/tmp/vit_headtrain_XXXXXX";

static void test_init_modes(void) {
    const float w[2 * 3] = {1, 2, 3, 4, 5, 6}, b[2] = {0.5f, -0.5f};
    const char *labels[2] = {"cat", "dog"};
    vit_head *base = NULL, *h = NULL;
    CHECK(vit_head_new(2, 3, w, b, labels, &base) == VIT_OK, "base head");
    char err[256] = "";
    const char *names[3] = {"bird", "dog", "fish"};
    int32_t map[3] = {-1, -1, -1};

    vit_status st = vit_head_init_for_training(base, VIT_LABELS_REPLACE, names, 3, 3, &h, map, err, sizeof err);
    int zero = 1;
    for (int i = 0; h && i < 9; i++) zero &= vit_head_weight(h)[i] == 0.f;
    for (int i = 0; h && i < 3; i++) zero &= vit_head_bias(h)[i] == 0.f;
    CHECK(st == VIT_OK && vit_head_num_classes(h) == 3 && !strcmp(vit_head_label(h, 0), "bird") &&
              !strcmp(vit_head_label(h, 2), "fish") && zero && map[0] == 0 && map[1] == 1 && map[2] == 2,
          "replace: exactly the new labels, zero weights (%s)", err);
    vit_head_release(h);
    h = NULL;

    st = vit_head_init_for_training(base, VIT_LABELS_EXTEND, names, 3, 3, &h, map, err, sizeof err);
    int kept = h && !memcmp(vit_head_weight(h), w, sizeof w) && vit_head_bias(h)[0] == 0.5f &&
               vit_head_bias(h)[1] == -0.5f;
    int newzero = 1;
    for (int i = 6; h && i < 12; i++) newzero &= vit_head_weight(h)[i] == 0.f;
    CHECK(st == VIT_OK && vit_head_num_classes(h) == 4 && kept && newzero &&
              !strcmp(vit_head_label(h, 1), "dog") && !strcmp(vit_head_label(h, 2), "bird") &&
              !strcmp(vit_head_label(h, 3), "fish") && map[0] == 2 && map[1] == 1 && map[2] == 3,
          "extend: old rows kept, 'dog' maps to its row, new labels appended with zero rows");

    /* vit_head_train: new head, same labels, init untouched */
    float x[8 * 3];
    int32_t y[8];
    for (int i = 0; i < 8; i++) {
        y[i] = i % 4;
        for (int d = 0; d < 3; d++) x[i * 3 + d] = (float)((i % 4) == d) * 2.f - 0.5f + 0.1f * (float)d;
    }
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 50;
    o.lr = 0.05f;
    o.batch_size = 4;
    vit_head *t = NULL;
    vit_train_result res;
    st = vit_head_train(h, x, y, 8, &o, &t, &res, err, sizeof err);
    CHECK(st == VIT_OK && t && t != h && vit_head_num_classes(t) == 4 && !strcmp(vit_head_label(t, 3), "fish") &&
              !memcmp(vit_head_weight(h), w, sizeof w) && res.loss < 1.0f,
          "head_train: new head with init's labels, init unchanged, loss %.3f", res.loss);
    vit_head_release(t);
    vit_head_release(h);
    h = NULL;

    const char *dup[2] = {"a", "a"};
    CHECK(vit_head_init_for_training(NULL, VIT_LABELS_REPLACE, dup, 2, 3, &h, NULL, err, sizeof err) == VIT_E_ARG,
          "duplicate label rejected: %s", err);
    CHECK(vit_head_init_for_training(NULL, VIT_LABELS_EXTEND, names, 3, 3, &h, NULL, err, sizeof err) == VIT_E_ARG,
          "extend without a base rejected: %s", err);
    CHECK(vit_head_init_for_training(base, VIT_LABELS_EXTEND, names, 3, 4, &h, NULL, err, sizeof err) == VIT_E_ARG,
          "feature size mismatch rejected: %s", err);
    const char *empty[1] = {""};
    CHECK(vit_head_init_for_training(NULL, VIT_LABELS_REPLACE, empty, 1, 3, &h, NULL, err, sizeof err) == VIT_E_ARG &&
              h == NULL,
          "empty label rejected: %s", err);
    vit_head_release(base);
}

/* ---- head files --------------------------------------------------------------------------- */

static void write_raw(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
}

/* a head file with the given header JSON and data bytes */
static void write_st(const char *path, const char *json, const void *data, size_t dlen) {
    size_t jl = strlen(json);
    uint8_t *buf = malloc(8 + jl + dlen);
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)((uint64_t)jl >> (8 * b));
    memcpy(buf + 8, json, jl);
    memcpy(buf + 8 + jl, data, dlen);
    write_raw(path, buf, 8 + jl + dlen);
    free(buf);
}

static void test_head_files(void) {
    char path[256], err[256] = "";
    snprintf(path, sizeof path, "%s/h.safetensors", tmpdir);
    float w[3 * 2] = {1.5f, -2, 3, 4.25f, -5, 6}, b[3] = {0.1f, 0.2f, -0.3f};
    const char *labels[3] = {"tops", "foot \"wear\"", "other/stuff"};
    vit_head *h = NULL, *r = NULL;
    vit_head_new(3, 2, w, b, labels, &h);
    const char *kv[] = {"version", "7", "metrics", "{\"loss\":0.5}"};
    vit_status st = vit_head_save(h, path, kv, 2, err, sizeof err);
    CHECK(st == VIT_OK, "head save (%s)", err);
    char *meta = NULL;
    st = vit_head_load(path, &r, &meta, err, sizeof err);
    CHECK(st == VIT_OK && r && vit_head_num_classes(r) == 3 && vit_head_dim(r) == 2 &&
              !memcmp(vit_head_weight(r), w, sizeof w) && !memcmp(vit_head_bias(r), b, sizeof b) &&
              !strcmp(vit_head_label(r, 1), "foot \"wear\"") && !strcmp(vit_head_label(r, 2), "other/stuff"),
          "head load: same weights, bias and labels (%s)", err);
    CHECK(meta && strstr(meta, "\"version\":\"7\"") && strstr(meta, "vitd-head"), "metadata returned: %s",
          meta ? meta : "(null)");
    free(meta);
    vit_head_release(r);
    r = NULL;

    /* truncations of a valid file at every length fail cleanly */
    uint8_t *full;
    size_t flen;
    vit_read_file(path, 1 << 20, &full, &flen, err, sizeof err);
    int all_fail = 1;
    char tp[256];
    snprintf(tp, sizeof tp, "%s/t.safetensors", tmpdir);
    for (size_t cut = 0; cut < flen; cut += (cut < 16 ? 1 : 7)) {
        write_raw(tp, full, cut);
        st = vit_head_load(tp, &r, NULL, err, sizeof err);
        if (st == VIT_OK || r) all_fail = 0;
        vit_head_release(r);
        r = NULL;
    }
    CHECK(all_fail, "every truncated head file is rejected");
    /* a flipped header length */
    full[7] = 0x7f;
    write_raw(tp, full, flen);
    CHECK(vit_head_load(tp, &r, NULL, err, sizeof err) == VIT_E_CHECKPOINT, "huge header length: %s", err);
    free(full);

    struct { const char *json; size_t dlen; const char *what; } bad[] = {
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
         "\"__metadata__\":{\"format\":\"vitd-head\",\"labels\":\"[\\\"a\\\"]\"}}", 12, NULL},
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,16]},"
         "\"__metadata__\":{\"format\":\"vitd-head\",\"labels\":\"[\\\"a\\\"]\"}}", 12, "bias offsets past the data"},
        {"{\"weight\":{\"dtype\":\"F16\",\"shape\":[1,2],\"data_offsets\":[0,4]},\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
         "\"__metadata__\":{\"format\":\"vitd-head\",\"labels\":\"[\\\"a\\\"]\"}}", 8, "F16 weight"},
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
         "\"__metadata__\":{\"format\":\"vitd-head\",\"labels\":\"[\\\"a\\\",\\\"b\\\"]\"}}", 12, "2 labels for 1 row"},
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
         "\"__metadata__\":{\"labels\":\"[\\\"a\\\"]\"}}", 12, "no format"},
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[0,8]},\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
         "\"__metadata__\":{\"format\":\"vitd-head\",\"labels\":\"[\\\"a\\\"]\"}}", 12, "shape not matching the byte range"},
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
         "\"__metadata__\":{\"format\":\"vitd-head\",\"labels\":\"[\\\"a\\\"]\"}}", 16, "bias rows differ"},
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
         "\"__metadata__\":{\"format\":\"vitd-head\",\"labels\":\"[\\\"a\\\"\"}}", 12, "labels not JSON"},
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
         "\"__metadata__\":{\"format\":\"vitd-head\",\"labels\":\"[3]\"}}", 12, "label not a string"},
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},", 12, "header not JSON"},
        {"{\"weight\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]},\"bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
         "\"__metadata__\":{\"format\":\"vitd-head\",\"labels\":\"[\\\"a\\\"]\"}}", 12, "negative dim"},
    };
    float data[4] = {1, 2, 3, 0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_st(tp, bad[i].json, data, bad[i].dlen);
        st = vit_head_load(tp, &r, NULL, err, sizeof err);
        if (!bad[i].what) CHECK(st == VIT_OK && r && vit_head_bias(r)[0] == 3.f, "hand-written head file loads (%s)", err);
        else CHECK(st == VIT_E_CHECKPOINT && !r, "rejected: %s: %s", bad[i].what, err);
        vit_head_release(r);
        r = NULL;
    }
    float nanw[3] = {NAN, 1, 1};
    write_st(tp, bad[0].json, nanw, 12);
    CHECK(vit_head_load(tp, &r, NULL, err, sizeof err) == VIT_E_CHECKPOINT, "rejected: NaN weight: %s", err);
    snprintf(tp, sizeof tp, "%s/missing.safetensors", tmpdir);
    CHECK(vit_head_load(tp, &r, NULL, err, sizeof err) == VIT_E_IO, "missing file is an i/o error");
    unlink(path);
    snprintf(tp, sizeof tp, "%s/t.safetensors", tmpdir);
    unlink(tp);
    vit_head_release(h);
}

/* ---- model directories with a new head ------------------------------------------------------ */

static void test_model_save(const char *name) {
    char src[256], out[256], err[512] = "";
    snprintf(src, sizeof src, "tests/fixtures/models/%s", name);
    snprintf(out, sizeof out, "%s/%s-new", tmpdir, name);
    vit_model *m = NULL, *m2 = NULL;
    vit_session *s = NULL, *s2 = NULL;
    vit_status st = vit_model_load(src, NULL, &m, err, sizeof err);
    if (st != VIT_OK) { CHECK(0, "%s: load: %s", name, err); return; }
    const vit_config *c = vit_model_config(m);
    const int D = c->feature_dim, C = 3;
    float *w = malloc(sizeof(float) * C * D), b[3] = {0.25f, -0.5f, 0.125f};
    for (int i = 0; i < C * D; i++) w[i] = sinf(0.37f * (float)i);
    const char *labels[3] = {"tops", "footwear", "other"};
    vit_head *h = NULL;
    vit_head_new(C, D, w, b, labels, &h);
    st = vit_model_save_with_head(src, h, out, err, sizeof err);
    CHECK(st == VIT_OK, "%s: save with a new head (%s)", name, err);
    st = vit_model_load(out, NULL, &m2, err, sizeof err);
    CHECK(st == VIT_OK, "%s: the written directory loads (%s)", name, err);
    if (st == VIT_OK) {
        const vit_config *c2 = vit_model_config(m2);
        CHECK(c2->num_classes == 3 && !strcmp(c2->labels[0], "tops") && !strcmp(c2->labels[2], "other") &&
                  c2->feature_dim == D,
              "%s: 3 classes with the new labels", name);
        vit_session_opts so = { .max_batch = 2, .threads = 1, .device = VIT_DEVICE_CPU };
        vit_session_new(m, &so, &s, err, sizeof err);
        vit_session_new(m2, &so, &s2, err, sizeof err);
        const int n_in = 2 * c->num_channels * c->image_h * c->image_w;   /* (2, C, H, W) */
        float *x = malloc(sizeof(float) * n_in), *f = malloc(sizeof(float) * 2 * D);
        for (int i = 0; i < n_in; i++) x[i] = cosf(0.01f * (float)i);
        float lg[6], ref[6];
        vit_outputs o1 = { .features = f }, o2 = { .logits = lg };
        vit_forward(s, x, 2, NULL, &o1);
        vit_forward(s2, x, 2, NULL, &o2);
        float mx = 0;
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < C; k++) {
                double z = b[k];
                for (int d = 0; d < D; d++) z += (double)w[k * D + d] * f[i * D + d];
                ref[i * C + k] = (float)z;
                mx = fmaxf(mx, fabsf((float)z));
            }
        char nm[128];
        snprintf(nm, sizeof nm, "%s: logits of the saved model = features @ W^T + b", name);
        CHECK_CLOSE(lg, ref, 6, 1e-4f * (1 + mx), nm);
        free(x);
        free(f);
    }
    vit_session_free(s);
    vit_session_free(s2);
    vit_model_free(m2);
    vit_model_free(m);
    vit_head_release(h);
    free(w);
    /* the source stays as it was */
    vit_model *m3 = NULL;
    CHECK(vit_model_load(src, NULL, &m3, err, sizeof err) == VIT_OK && vit_model_config(m3)->num_classes != 3,
          "%s: the source directory is untouched", name);
    vit_model_free(m3);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    CHECK(system(cmd) == 0, "%s: cleanup", name);
}

int main(void) {
    if (!mkdtemp(tmpdir)) { CHECK(0, "mkdtemp"); return TEST_SUMMARY(); }
    test_init_modes();
    test_head_files();
    const char *models[] = {"tiny-hf", "tiny-timm", "tiny-tv", "tiny-deit-distilled", "tiny-hf-f16",
                            "tiny-timm-prelogits", "tiny-hf-deit-distilled", "tiny-timm-layerscale", "tiny-timm-reg4",
                            "tiny-timm-gray", "tiny-hf-gray", "tiny-timm-dinov2",
                            "tiny-timm-rect", "tiny-hf-rect", "tiny-hf-dinov2", "tiny-hf-dinov2-reg4"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) test_model_save(models[i]);
    rmdir(tmpdir);
    return TEST_SUMMARY();
}
