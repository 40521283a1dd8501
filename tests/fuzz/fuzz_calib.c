/* fuzz_calib.c: libFuzzer harness for the calibration file reader (vit_calib_parse,
 * engine/io/calib_io.c), the file `vit calibrate` writes beside a model and vit_model_load
 * reads.  On success the calibration must be in range (every amax finite and > 0, layer count
 * bounded), the dims check must answer for the model it names, and writing it back and parsing
 * that must give the same values bit for bit.  An error always has a message and hands out
 * nothing. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/calib_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vit_calib c;
    char err[256] = "";
    vit_status st = vit_calib_parse(&c, (const char *)data, size, err, sizeof err);
    if (st != VIT_OK) {
        if (c.amax || !err[0]) abort();
        return 0;
    }
    if (c.num_layers < 0 || c.num_layers > VIT_CALIB_MAX_LAYERS || c.samples < 1 || !c.amax) abort();
    for (size_t i = 0; i < (size_t)c.num_layers * VIT_CALIB_LINEARS; i++)
        if (!isfinite(c.amax[i]) || !(c.amax[i] > 0.f)) abort();
    vit_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.num_layers = c.num_layers;
    cfg.hidden_size = c.hidden_size;
    cfg.mlp_size = c.mlp_size;
    if (vit_calib_check(&c, &cfg, err, sizeof err) != VIT_OK) abort();
    cfg.mlp_size++;
    if (vit_calib_check(&c, &cfg, err, sizeof err) != VIT_E_CONFIG) abort();
    char *text = vit_calib_to_json(&c);
    if (!text) abort();
    vit_calib d;
    if (vit_calib_parse(&d, text, strlen(text), err, sizeof err) != VIT_OK) abort();
    if (d.num_layers != c.num_layers || d.samples != c.samples || d.method != c.method ||
        memcmp(d.amax, c.amax, sizeof(float) * VIT_CALIB_LINEARS * (size_t)c.num_layers))
        abort();
    free(text);
    vit_calib_free(&d);
    vit_calib_free(&c);
    return 0;
}
