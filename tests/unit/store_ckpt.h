/* store_ckpt.h: for the admin store contract tests (test_store_dir.c, store_pg_contract.c): a
 * real training checkpoint of a claimed job, as the trainer would store it after `epoch`: the
 * claim's examples trained from a zero head of nlabels classes (vit_train_linear with a
 * checkpoint callback).  Returns the malloc'd bytes (*len), or NULL. */
#ifndef VIT_TEST_STORE_CKPT_H
#define VIT_TEST_STORE_CKPT_H
#include <stdlib.h>
#include <string.h>

#include "../../server/admin_store.h"

typedef struct ckpt_grab {
    int want;
    void *data;
    size_t len;
} ckpt_grab;

static void ckpt_grab_cb(void *ctx, int epoch, const void *data, size_t len) {
    ckpt_grab *g = ctx;
    if (epoch != g->want || g->data || !(g->data = malloc(len))) return;
    memcpy(g->data, data, len);
    g->len = len;
}

static void *ckpt_of(const adm_claim *c, int epoch, size_t *len) {
    float *w = calloc((size_t)c->nlabels * (size_t)c->dim, sizeof(float)), *b = calloc((size_t)c->nlabels, sizeof(float));
    ckpt_grab g = {.want = epoch};
    vit_train_opts o = c->opts;
    o.checkpoint = ckpt_grab_cb;
    o.cb_ctx = &g;
    o.device = VIT_DEVICE_CPU;
    char err[256];
    if (!w || !b || vit_train_linear(w, b, c->nlabels, c->dim, c->x, c->y, c->n, &o, NULL, err, sizeof err) != VIT_OK) {
        free(g.data);
        g.data = NULL;
    }
    free(w);
    free(b);
    *len = g.len;
    return g.data;
}

#endif
