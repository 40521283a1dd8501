/* model_dir.h: reading a model directory, each file once: config.json, preprocessor_config.json,
 * labels.txt (model.safetensors is safetensors.h's).  The loader (model.c), the preprocessing
 * settings (preprocess_config.c) and the model writer (model_dir_write.c) all go through it.
 * Engine-internal. */
#ifndef VIT_MODEL_DIR_H
#define VIT_MODEL_DIR_H
#include <cJSON.h>
#include <stddef.h>

#include "vit.h"

#define MD_MAX_JSON ((size_t)64 << 20)  /* config.json, labels.txt: in21k's id2label is ~1 MB */

typedef struct model_dir {
    const char *dir;          /* borrowed */
    cJSON *config;            /* config.json once read (md_config), or NULL */
    int config_read;          /* md_config ran (config NULL then: the directory has none) */
    cJSON *preprocessor;      /* preprocessor_config.json once read, or NULL */
    int preprocessor_read;
} model_dir;

/* dir must be a directory: VIT_E_IO "<dir>: not a model directory" otherwise, VIT_E_ARG when
 * the path is too long. */
vit_status md_open(const char *dir, model_dir *md, char *err, size_t errlen);
void md_close(model_dir *md);                      /* frees what was read; md zeroed */

/* config.json parsed (once): md->config.  required: a missing file is an error (VIT_E_IO from
 * reading it); otherwise md->config stays NULL.  Bad JSON or not an object: VIT_E_CONFIG. */
vit_status md_config(model_dir *md, int required, char *err, size_t errlen);
/* preprocessor_config.json parsed (once) when present: md->preprocessor, else NULL */
vit_status md_preprocessor(model_dir *md, char *err, size_t errlen);

/* C class labels: id2label or label_names in config.json (md_config first), else labels.txt,
 * else *out NULL (the caller's defaults).  Counts must match C.  Free with md_free_labels. */
vit_status md_labels(model_dir *md, int C, char ***out, char *err, size_t errlen);
void md_free_labels(char **labels, int n);

/* the file dir/name exists as a regular file */
int md_has_file(const model_dir *md, const char *name);

/* preprocessing settings from the directory (preprocess_config.c), at image_size (0: the config's) */
vit_status md_preprocess(model_dir *md, int image_size, vit_preprocess *out, char *err, size_t errlen);

#endif
