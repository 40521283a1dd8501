/* calib_io.h: the calibration file (calibration.json beside model.safetensors): per-tensor
 * activation ranges of the inputs of every block's four Linears (qkv, proj, fc1, fc2), written by
 * `vit calibrate` (engine/calib.c) and read with the model.  Weight scales are not stored: they
 * are per output channel, max_k |W[n][k]| / 127, a function of the weights alone, computed when
 * the weights are quantized (cpu_gemm_i8.c, cuda_engine.cu).
 *
 * Format (JSON object, at most VIT_CALIB_MAX_BYTES; every key required, others refused):
 *   {"format": "vitd-calibration", "version": 1, "method": "minmax"|"percentile"|"mse",
 *    "samples": N >= 1, "num_layers": L, "hidden_size": D, "mlp_size": M,
 *    "amax": [[qkv, proj, fc1, fc2], ... L rows]}
 * amax is the clipping range of each input tensor (finite, > 0): INT8 scale = amax / 127, FP8
 * E4M3 scale = amax / 448. */
#ifndef VIT_CALIB_IO_H
#define VIT_CALIB_IO_H
#include <stddef.h>
#include "vit.h"

#define VIT_CALIB_FILE "calibration.json"
#define VIT_CALIB_MAX_BYTES (1u << 20)
#define VIT_CALIB_MAX_LAYERS 1024
#define VIT_CALIB_LINEARS 4   /* qkv, proj, fc1, fc2 */

typedef struct vit_calib {
    int num_layers, hidden_size, mlp_size, samples;
    vit_calib_method method;
    float *amax;              /* (num_layers, 4) */
} vit_calib;

/* parse buf[0, len) (need not be NUL-terminated); on success *out owns amax (vit_calib_free).
 * VIT_E_CONFIG with the key at fault on any format error. */
vit_status vit_calib_parse(vit_calib *out, const char *buf, size_t len, char *err, size_t errlen);
/* the calibration's dims match the model's */
vit_status vit_calib_check(const vit_calib *c, const vit_config *cfg, char *err, size_t errlen);
/* dir/calibration.json into *out (checked against cfg): VIT_OK, or VIT_E_IO when there is no
 * such file (*out zeroed), or the error of a file that is there but wrong */
vit_status vit_calib_load_dir(const char *dir, const vit_config *cfg, vit_calib *out, char *err,
                              size_t errlen);
/* the JSON text (malloc'd, NUL-terminated), NULL when out of memory; parse(write(c)) == c */
char *vit_calib_to_json(const vit_calib *c);
void vit_calib_free(vit_calib *c);

#endif
