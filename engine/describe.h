/* describe.h: the model description shared by `vit info --json` (engine/cli/cmd_info.c) and
 * GET /v1/models (server/http.c), as cJSON, so the two never drift apart.  Internal: vit.h stays
 * free of cJSON.  Each caller adds its own fields around these (info: the whole config and the
 * preprocessing as stored; the server: id, path, preprocessing, device, precision, batching). */
#ifndef VIT_DESCRIBE_H
#define VIT_DESCRIBE_H

#include <cJSON.h>

#include "vit.h"

/* "bicubic", "bilinear", "nearest" ("?" for anything else) */
const char *vit_resample_name(int resample);

/* Adds to object o: architecture, naming, image_size, patch_size, hidden_size, num_layers,
 * num_heads, mlp_size, num_params, feature_dim, num_channels, num_register_tokens, layer_scale,
 * image_hw ([h, w]), num_classes and labels.  num_classes and labels
 * come from head h when it is not NULL (the server's active head), else from c (the checkpoint's).
 * Returns VIT_OK, or VIT_E_NOMEM when cJSON ran out of memory (o then holds a part). */
vit_status vit_describe_json(cJSON *o, const vit_config *c, const vit_head *h);

#endif
