/* fuzz_admin.c: libFuzzer harness for the admin API's request-body parsing
 * (server/admin_parse.c): the POST /admin/train JSON options.  The input is the raw body.  An
 * accepted body must give options inside the documented ranges. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/admin_parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the body in its own allocation, so ASan sees any read past its end (it is not
     * NUL-terminated, as the HTTP layer's is not) */
    uint8_t *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);
    vit_train_opts o;
    vit_label_mode mode = (vit_label_mode)-1;
    char msg[300] = "";
    int rc = admin_parse_train(body, size, &o, &mode, msg, sizeof msg);
    free(body);
    if (rc != 0 && rc != -1) abort();
    if (rc < 0) {
        if (!msg[0]) abort();
        return 0;
    }
    if (o.epochs < 1 || o.epochs > 1000 || o.batch_size < 1 || o.batch_size > 4096 || !(o.lr > 0) ||
        !(o.weight_decay >= 0) || !(o.val_fraction >= 0 && o.val_fraction <= 0.5f) || !(o.momentum >= 0 && o.momentum < 1) ||
        (mode != VIT_LABELS_REPLACE && mode != VIT_LABELS_EXTEND) || (o.optimizer != VIT_OPT_ADAMW && o.optimizer != VIT_OPT_SGD))
        abort();
    return 0;
}
