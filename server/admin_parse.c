/* admin_parse.c: the admin API's request-body parsing, apart from HTTP and the admin state so
 * that it can be tested and fuzzed on its own (tests/fuzz/fuzz_admin.c): the POST /admin/train
 * JSON options (see admin.h). */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"

int admin_parse_train(const uint8_t *body, size_t len, vit_train_opts *o, vit_label_mode *mode, char *msg,
                      size_t msglen) {
    vit_train_opts_default(o);
    o->epochs = 30;
    o->lr = 3e-3f;
    o->batch_size = 32;
    o->weight_decay = 1e-4f;
    o->val_fraction = 0.1f;
    *mode = VIT_LABELS_REPLACE;
    size_t k = 0;
    while (k < len && (body[k] == ' ' || body[k] == '\n' || body[k] == '\r' || body[k] == '\t')) k++;
    if (k == len) return 0;                   /* empty body: every default */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)body, len, &end, 0);
    while (root && end && end < (const char *)body + len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (root && end != (const char *)body + len) {   /* trailing bytes after the object */
        cJSON_Delete(root);
        root = NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(msg, msglen, "the body must be a JSON object");
        return -1;
    }
    int rc = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, root) {
        const char *n = f->string;
        double v = f->valuedouble;
        int num = cJSON_IsNumber(f), integral = num && v == floor(v);
#define RANGE(cond, what) if (!(cond)) { snprintf(msg, msglen, "%s: expected %s", n, what); rc = -1; break; }
        if (!strcmp(n, "epochs")) { RANGE(integral && v >= 1 && v <= 1000, "an integer in [1, 1000]"); o->epochs = (int)v; }
        else if (!strcmp(n, "batch_size")) { RANGE(integral && v >= 1 && v <= 4096, "an integer in [1, 4096]"); o->batch_size = (int)v; }
        else if (!strcmp(n, "lr")) { RANGE(num && v > 0 && v <= 10, "a number in (0, 10]"); o->lr = (float)v; }
        else if (!strcmp(n, "weight_decay")) { RANGE(num && v >= 0 && v <= 1, "a number in [0, 1]"); o->weight_decay = (float)v; }
        else if (!strcmp(n, "val_fraction")) { RANGE(num && v >= 0 && v <= 0.5, "a number in [0, 0.5]"); o->val_fraction = (float)v; }
        else if (!strcmp(n, "momentum")) { RANGE(num && v >= 0 && v < 1, "a number in [0, 1)"); o->momentum = (float)v; }
        else if (!strcmp(n, "seed")) { RANGE(integral && v >= 0 && v <= 2147483647.0, "an integer in [0, 2147483647]"); o->seed = (uint64_t)v; }
        else if (!strcmp(n, "optimizer")) {
            RANGE(cJSON_IsString(f) && (!strcmp(f->valuestring, "adamw") || !strcmp(f->valuestring, "sgd")),
                  "\"adamw\" or \"sgd\"");
            o->optimizer = !strcmp(f->valuestring, "sgd") ? VIT_OPT_SGD : VIT_OPT_ADAMW;
        } else if (!strcmp(n, "labels")) {
            RANGE(cJSON_IsString(f) && (!strcmp(f->valuestring, "replace") || !strcmp(f->valuestring, "extend")),
                  "\"replace\" or \"extend\"");
            *mode = !strcmp(f->valuestring, "extend") ? VIT_LABELS_EXTEND : VIT_LABELS_REPLACE;
        } else {
            snprintf(msg, msglen, "unknown field '%s' (known: epochs, lr, batch_size, weight_decay, "
                     "val_fraction, optimizer, labels, momentum, seed)", n);
            rc = -1;
            break;
        }
#undef RANGE
    }
    cJSON_Delete(root);
    return rc;
}
