/* head.c: classification heads (linear, C x D, plus labels), reference counted and immutable
 * once made, so a head can be swapped while batches still run with the old one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

#define HEAD_MAX_CLASSES 1000000
#define HEAD_MAX_DIM     65536
#define HEAD_MAX_LABEL   4096

static void head_free(vit_head *h) {
    if (!h) return;
    if (h->labels)
        for (int i = 0; i < h->num_classes; i++) free(h->labels[i]);
    free(h->labels);
    free(h->w);
    free(h->b);
    free(h);
}

vit_status vit_head_new(int num_classes, int dim, const float *w, const float *b,
                        const char *const *labels, vit_head **out) {
    if (!out) return VIT_E_ARG;
    *out = NULL;
    if (num_classes < 1 || num_classes > HEAD_MAX_CLASSES || dim < 1 || dim > HEAD_MAX_DIM || !w || !b)
        return VIT_E_ARG;
    vit_head *h = calloc(1, sizeof *h);
    if (!h) return VIT_E_NOMEM;
    h->num_classes = num_classes;
    h->dim = dim;
    size_t nw = (size_t)num_classes * (size_t)dim;
    h->w = malloc(nw * sizeof *h->w);
    h->b = malloc((size_t)num_classes * sizeof *h->b);
    h->labels = calloc((size_t)num_classes, sizeof *h->labels);
    if (!h->w || !h->b || !h->labels) { head_free(h); return VIT_E_NOMEM; }
    memcpy(h->w, w, nw * sizeof *h->w);
    memcpy(h->b, b, (size_t)num_classes * sizeof *h->b);
    for (int i = 0; i < num_classes; i++) {
        if (labels && labels[i]) {
            h->labels[i] = strndup(labels[i], HEAD_MAX_LABEL);
        } else {
            char tmp[32];
            snprintf(tmp, sizeof tmp, "LABEL_%d", i);
            h->labels[i] = strdup(tmp);
        }
        if (!h->labels[i]) { head_free(h); return VIT_E_NOMEM; }
    }
    atomic_init(&h->refs, 1);
    *out = h;
    return VIT_OK;
}

void vit_head_retain(vit_head *h) {
    if (h) atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
}

void vit_head_release(vit_head *h) {
    if (h && atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1) head_free(h);
}

int vit_head_num_classes(const vit_head *h) { return h ? h->num_classes : 0; }
int vit_head_dim(const vit_head *h) { return h ? h->dim : 0; }

const char *vit_head_label(const vit_head *h, int i) {
    return h && i >= 0 && i < h->num_classes ? h->labels[i] : NULL;
}

const float *vit_head_weight(const vit_head *h) { return h ? h->w : NULL; }
const float *vit_head_bias(const vit_head *h) { return h ? h->b : NULL; }
