/* describe.h: the one description of a loaded model, as cJSON, that both `vit info --json`
 * (engine/cli/cmd_info.c) and GET /v1/models (the server's models handler) print, so the two
 * carry the same fields under the same names.  Internal: vit.h stays free of cJSON.  Each caller
 * adds only what is its own around these: `vit info` the path it was given; the server id, path,
 * device, precision, input type and batching. */
#ifndef VIT_DESCRIBE_H
#define VIT_DESCRIBE_H

#include <cJSON.h>

#include "vit.h"

/* "bicubic", "bilinear", "nearest" ("?" for anything else) */
const char *vit_resample_name(int resample);

/* Adds to object o:
 *   architecture, naming, image_size, trained_image_size, patch_size, num_channels,
 *   attention_grid [h, w], num_patches, num_prefix_tokens, num_tokens, hidden_size, num_layers,
 *   num_heads, mlp_size, layer_norm_eps, qkv_bias, pooling ("cls" | "mean"), pre_logits,
 *   distilled, num_params, feature_dim, num_classes, labels,
 *   preprocessing {do_resize, shortest_edge | resize [h, w], resample, do_center_crop, crop [h, w],
 *                  do_rescale, rescale_factor (1 when do_rescale is false), do_normalize, mean,
 *                  std, output [h, w]},
 *   knobs {NAME: value in effect} (engine/knobs.c; numbers for int and bool knobs).
 * num_classes and labels come from head h when it is not NULL (the server's active head), else
 * from c (the checkpoint's).  Returns VIT_OK, or VIT_E_NOMEM when cJSON ran out of memory (o then
 * holds a part). */
vit_status vit_describe_json(cJSON *o, const vit_config *c, const vit_head *h);

#endif
