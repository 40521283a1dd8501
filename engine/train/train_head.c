/* train_head.c: head-level wrappers of head training (train.c): the starting head for the
 * replace / extend label modes, and training a copy of a head into a new vit_head.
 * Kept apart from train.c so that users of the raw trainer do not pull in head.c. */
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_TRAIN_CLASSES 100000

vit_status vit_head_init_for_training(const vit_head *base, vit_label_mode mode,
                                      const char *const *names, int n, int dim, vit_head **out,
                                      int32_t *map, char *err, size_t errlen) {
    if (!out) return vit_errf(VIT_E_ARG, err, errlen, "head init: NULL out");
    *out = NULL;
    if (mode != VIT_LABELS_REPLACE && mode != VIT_LABELS_EXTEND)
        return vit_errf(VIT_E_ARG, err, errlen, "head init: unknown label mode %d", (int)mode);
    if (mode == VIT_LABELS_EXTEND && !base)
        return vit_errf(VIT_E_ARG, err, errlen, "head init: extend needs a base head");
    if (base && vit_head_dim(base) != dim)
        return vit_errf(VIT_E_ARG, err, errlen, "head init: feature dim %d, base head has %d", dim,
                        vit_head_dim(base));
    if (dim < 1 || n < 1 || n > MAX_TRAIN_CLASSES || !names)
        return vit_errf(VIT_E_ARG, err, errlen, "head init: bad sizes (dim %d, %d labels)", dim, n);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !names[i][0])
            return vit_errf(VIT_E_ARG, err, errlen, "head init: label %d is empty", i);
        for (int j = 0; j < i; j++)
            if (!strcmp(names[i], names[j]))
                return vit_errf(VIT_E_ARG, err, errlen, "head init: label '%s' given twice",
                                names[i]);
    }
    int base_c = mode == VIT_LABELS_EXTEND ? vit_head_num_classes(base) : 0;
    /* class index of every name; new names are appended after base's rows */
    int32_t *m = malloc(sizeof(int32_t) * (size_t)n);
    if (!m) return vit_errf(VIT_E_NOMEM, err, errlen, "head init: out of memory");
    int C = base_c;
    for (int i = 0; i < n; i++) {
        m[i] = -1;
        for (int c = 0; c < base_c; c++)
            if (!strcmp(names[i], vit_head_label(base, c))) { m[i] = c; break; }
        if (m[i] < 0) m[i] = C++;
    }
    if (C > MAX_TRAIN_CLASSES) {
        free(m);
        return vit_errf(VIT_E_ARG, err, errlen, "head init: %d classes, at most %d", C,
                        MAX_TRAIN_CLASSES);
    }
    float *w = calloc((size_t)C * (size_t)dim, sizeof(float));   /* (C, dim) */
    float *b = calloc((size_t)C, sizeof(float));                 /* (C) */
    const char **labels = malloc(sizeof(char *) * (size_t)C);
    vit_status st = VIT_OK;
    if (!w || !b || !labels) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "head init: out of memory (%d x %d)", C, dim);
        goto done;
    }
    if (base_c) {
        memcpy(w, vit_head_weight(base), sizeof(float) * (size_t)base_c * (size_t)dim);
        memcpy(b, vit_head_bias(base), sizeof(float) * (size_t)base_c);
        for (int c = 0; c < base_c; c++) labels[c] = vit_head_label(base, c);
    }
    for (int i = 0; i < n; i++)
        if (m[i] >= base_c) labels[m[i]] = names[i];
    st = vit_head_new(C, dim, w, b, labels, out);
    if (st != VIT_OK) vit_errf(st, err, errlen, "head init: %s", vit_status_str(st));
    else if (map) memcpy(map, m, sizeof(int32_t) * (size_t)n);
done:
    free(m);
    free(w);
    free(b);
    free(labels);
    return st;
}

vit_status vit_head_train(const vit_head *init, const float *x, const int32_t *y, int N,
                          const vit_train_opts *o, vit_head **out, vit_train_result *res,
                          char *err, size_t errlen) {
    if (!out) return vit_errf(VIT_E_ARG, err, errlen, "head train: NULL out");
    *out = NULL;
    if (!init) return vit_errf(VIT_E_ARG, err, errlen, "head train: NULL head");
    int C = vit_head_num_classes(init), D = vit_head_dim(init);
    float *w = malloc(sizeof(float) * (size_t)C * (size_t)D);
    float *b = malloc(sizeof(float) * (size_t)C);
    const char **labels = malloc(sizeof(char *) * (size_t)C);
    vit_status st;
    if (!w || !b || !labels) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "head train: out of memory");
        goto done;
    }
    memcpy(w, vit_head_weight(init), sizeof(float) * (size_t)C * (size_t)D);
    memcpy(b, vit_head_bias(init), sizeof(float) * (size_t)C);
    for (int c = 0; c < C; c++) labels[c] = vit_head_label(init, c);
    st = vit_train_linear(w, b, C, D, x, y, N, o, res, err, errlen);
    if (st == VIT_OK) {
        st = vit_head_new(C, D, w, b, labels, out);
        if (st != VIT_OK) vit_errf(st, err, errlen, "head train: %s", vit_status_str(st));
    }
done:
    free(w);
    free(b);
    free(labels);
    return st;
}
