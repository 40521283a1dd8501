/* preprocess_config.c: a model directory's preprocessing settings (vit_preprocess): Hugging Face's
 * preprocessor_config.json, else timm's pretrained_cfg in config.json, else Hugging Face ViT's
 * defaults at config.json's image_size.  The files are read through model_dir.c. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model_dir.h"
#include "util.h"

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};

static int json_bool(const cJSON *o, const char *k, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    return def;
}
static int json_has_num(const cJSON *o, const char *k, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valuedouble;
    return 1;
}
/* 1 or 3 numbers -> dst[3]; 0 when absent, -1 when malformed */
static int json_vec3(const cJSON *o, const char *k, float dst[3]) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) { dst[0] = dst[1] = dst[2] = (float)v->valuedouble; return 1; }
    int n = cJSON_GetArraySize(v);
    if (!cJSON_IsArray(v) || (n != 1 && n != 3)) return -1;
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, n == 1 ? 0 : i);
        if (!cJSON_IsNumber(e)) return -1;
        dst[i] = (float)e->valuedouble;
    }
    return 1;
}
static int size_ok(double v) { return v >= 1 && v <= 16384 && v == floor(v); }

static int resample_from_name(const char *s) {
    if (!s) return VIT_RESAMPLE_BILINEAR;
    if (!strcmp(s, "bicubic")) return VIT_RESAMPLE_BICUBIC;
    if (!strcmp(s, "nearest")) return VIT_RESAMPLE_NEAREST;
    if (!strcmp(s, "lanczos")) return 1;
    if (!strcmp(s, "box")) return 4;
    if (!strcmp(s, "hamming")) return 5;
    return VIT_RESAMPLE_BILINEAR;  /* "bilinear", "random" */
}

/* run at another size than the config's: keep the resize/crop ratio */
static void pp_rescale(vit_preprocess *p, int image_size) {
    if (image_size <= 0 || (p->out_h == image_size && p->out_w == image_size)) return;
    if (p->do_center_crop) {
        if (p->shortest_edge > 0) p->shortest_edge = (int)floor((double)p->shortest_edge * image_size / p->out_h);
        else {
            p->resize_h = (int)floor((double)p->resize_h * image_size / p->out_h);
            p->resize_w = (int)floor((double)p->resize_w * image_size / p->out_w);
        }
        p->crop_h = p->crop_w = image_size;
    } else {
        p->resize_h = p->resize_w = image_size;
    }
    p->out_h = p->out_w = image_size;
}

/* Hugging Face preprocessor_config.json */
static vit_status pp_from_hf(const cJSON *j, int image_size, vit_preprocess *p, const char *dir,
                             char *err, size_t errlen) {
    double v;
    p->do_resize = json_bool(j, "do_resize", 1);
    p->resample = VIT_RESAMPLE_BILINEAR;
    if (json_has_num(j, "resample", &v)) {
        if (v != 0 && v != 1 && v != 2 && v != 3 && v != 4 && v != 5)
            return vit_errf(VIT_E_CONFIG, err, errlen, "%s/preprocessor_config.json: unknown resample %g", dir, v);
        p->resample = (int)v;
    }
    int sh = 224, sw = 224, se = 0;
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(j, "size");
    if (cJSON_IsNumber(size)) {
        if (!size_ok(size->valuedouble)) goto bad_size;
        sh = sw = (int)size->valuedouble;
    } else if (cJSON_IsObject(size)) {
        double h, w, s;
        if (json_has_num(size, "shortest_edge", &s)) {
            if (!size_ok(s)) goto bad_size;
            se = (int)s;
        } else if (json_has_num(size, "height", &h) && json_has_num(size, "width", &w)) {
            if (!size_ok(h) || !size_ok(w)) goto bad_size;
            sh = (int)h;
            sw = (int)w;
        } else goto bad_size;
    } else if (size && !cJSON_IsNull(size)) goto bad_size;
    p->do_center_crop = json_bool(j, "do_center_crop", 0);
    /* a real Hugging Face processor config names its class: then crop offsets are HF's */
    p->crop_floor = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "image_processor_type")) ||
                    cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "feature_extractor_type"));
    int ch = 0, cw = 0;
    const cJSON *crop = cJSON_GetObjectItemCaseSensitive(j, "crop_size");
    if (cJSON_IsNumber(crop)) {
        if (!size_ok(crop->valuedouble)) goto bad_size;
        ch = cw = (int)crop->valuedouble;
    } else if (cJSON_IsObject(crop)) {
        double h, w;
        if (!json_has_num(crop, "height", &h) || !json_has_num(crop, "width", &w) || !size_ok(h) || !size_ok(w))
            goto bad_size;
        ch = (int)h;
        cw = (int)w;
    }
    double crop_pct;
    if (se > 0 && !p->do_center_crop && json_has_num(j, "crop_pct", &crop_pct) && crop_pct > 0 && crop_pct <= 1) {
        /* ConvNeXt-style: resize shortest edge to int(s / crop_pct), crop s x s */
        p->do_center_crop = 1;
        ch = cw = se;
        se = (int)(se / crop_pct);
    }
    if (p->do_center_crop && (ch <= 0 || cw <= 0)) { ch = cw = 224; }
    if (se > 0 && !p->do_center_crop) {
        /* shortest-edge resize alone gives a size that varies per image: crop it square */
        p->do_center_crop = 1;
        ch = cw = se;
    }
    p->shortest_edge = se;
    p->resize_h = sh;
    p->resize_w = sw;
    p->crop_h = ch;
    p->crop_w = cw;
    p->do_rescale = json_bool(j, "do_rescale", 1);
    p->rescale_factor = 1.f / 255.f;
    if (json_has_num(j, "rescale_factor", &v)) p->rescale_factor = (float)v;
    p->do_normalize = json_bool(j, "do_normalize", 1);
    for (int c = 0; c < 3; c++) p->mean[c] = p->std[c] = 0.5f;
    if (json_vec3(j, "image_mean", p->mean) < 0 || json_vec3(j, "image_std", p->std) < 0)
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s/preprocessor_config.json: image_mean/image_std must be 1 or 3 numbers", dir);
    if (p->do_center_crop) { p->out_h = ch; p->out_w = cw; }
    else if (p->do_resize) { p->out_h = sh; p->out_w = sw; }
    else { p->out_h = image_size > 0 ? image_size : 224; p->out_w = p->out_h; p->do_center_crop = 1; p->crop_h = p->crop_w = p->out_h; }
    pp_rescale(p, image_size);
    return VIT_OK;
bad_size:
    return vit_errf(VIT_E_CONFIG, err, errlen, "%s/preprocessor_config.json: bad size or crop_size", dir);
}

/* timm pretrained_cfg: Resize(floor(H / crop_pct)) + CenterCrop(H, W), as timm's eval transform */
static vit_status pp_from_timm(const cJSON *cfg, int image_size, vit_preprocess *p, const char *dir,
                               char *err, size_t errlen) {
    int H = 224, W = 224;
    const cJSON *is = cJSON_GetObjectItemCaseSensitive(cfg, "input_size");
    if (cJSON_IsArray(is)) {
        int n = cJSON_GetArraySize(is);
        const cJSON *h = cJSON_GetArrayItem(is, n - 2), *w = cJSON_GetArrayItem(is, n - 1);
        if (n < 2 || !cJSON_IsNumber(h) || !cJSON_IsNumber(w) || !size_ok(h->valuedouble) || !size_ok(w->valuedouble))
            return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: bad pretrained_cfg.input_size", dir);
        H = (int)h->valuedouble;
        W = (int)w->valuedouble;
    }
    if (image_size > 0) H = W = image_size;
    double crop_pct = 0.875;
    json_has_num(cfg, "crop_pct", &crop_pct);
    if (!(crop_pct > 0.05 && crop_pct <= 4))
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: bad pretrained_cfg.crop_pct", dir);
    const cJSON *interp = cJSON_GetObjectItemCaseSensitive(cfg, "interpolation");
    p->resample = resample_from_name(cJSON_IsString(interp) ? interp->valuestring : NULL);
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(cfg, "crop_mode");
    int squash = cJSON_IsString(mode) && !strcmp(mode->valuestring, "squash");
    int sh = (int)floor(H / crop_pct), sw = (int)floor(W / crop_pct);
    p->do_resize = 1;
    if (!squash && sh == sw) { p->shortest_edge = sh; }
    else { p->shortest_edge = 0; p->resize_h = sh; p->resize_w = sw; }
    p->do_center_crop = 1;
    p->crop_h = p->out_h = H;
    p->crop_w = p->out_w = W;
    p->do_rescale = 1;
    p->rescale_factor = 1.f / 255.f;
    p->do_normalize = 1;
    memcpy(p->mean, IMAGENET_MEAN, sizeof p->mean);
    memcpy(p->std, IMAGENET_STD, sizeof p->std);
    if (json_vec3(cfg, "mean", p->mean) < 0 || json_vec3(cfg, "std", p->std) < 0)
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: pretrained_cfg mean/std must be 1 or 3 numbers", dir);
    return VIT_OK;
}

/* no preprocessing config: Hugging Face ViT's default, image_size x image_size bilinear,
 * mean = std = 0.5 */
static void pp_default(const cJSON *cfg, int image_size, vit_preprocess *p) {
    double v;
    int s = image_size, sw;
    if (s <= 0) s = cfg && json_has_num(cfg, "image_size", &v) && size_ok(v) ? (int)v : 224;
    sw = s;
    const cJSON *hw = cJSON_GetObjectItemCaseSensitive(cfg, "image_size");   /* [h, w] */
    if (image_size <= 0 && cJSON_IsArray(hw) && cJSON_GetArraySize(hw) == 2 && cJSON_IsNumber(hw->child) &&
        cJSON_IsNumber(hw->child->next) && size_ok(hw->child->valuedouble) && size_ok(hw->child->next->valuedouble)) {
        s = (int)hw->child->valuedouble;
        sw = (int)hw->child->next->valuedouble;
    }
    p->do_resize = 1;
    p->resize_h = s;
    p->resize_w = sw;
    p->resample = VIT_RESAMPLE_BILINEAR;
    p->do_rescale = 1;
    p->rescale_factor = 1.f / 255.f;
    p->do_normalize = 1;
    for (int c = 0; c < 3; c++) p->mean[c] = p->std[c] = 0.5f;
    p->out_h = s;
    p->out_w = sw;
}

/* input channels stated by config.json: HF num_channels, timm pretrained_cfg.input_size[0] or
 * model_args.in_chans; 3 when none.  The loader replaces it with the patch filter's. */
static vit_status pp_channels(model_dir *md, vit_preprocess *p, char *err, size_t errlen) {
    vit_status st = md_config(md, 0, err, errlen);
    if (st) return st;
    const cJSON *cfg = md->config, *pc = cJSON_GetObjectItemCaseSensitive(cfg, "pretrained_cfg");
    const cJSON *is = cJSON_GetObjectItemCaseSensitive(pc, "input_size");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "num_channels");
    if (!cJSON_IsNumber(v) && cJSON_IsArray(is) && cJSON_GetArraySize(is) == 3) v = cJSON_GetArrayItem(is, 0);
    if (!cJSON_IsNumber(v)) v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "model_args"), "in_chans");
    p->channels = 3;
    if (!cJSON_IsNumber(v)) return VIT_OK;
    if (v->valuedouble != 1 && v->valuedouble != 3)
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: %g input channels: only 1 (grayscale) and 3 (RGB) are supported",
                        md->dir, v->valuedouble);
    p->channels = (int)v->valuedouble;
    return VIT_OK;
}

vit_status md_preprocess(model_dir *md, int image_size, vit_preprocess *out, char *err, size_t errlen) {
    if (image_size < 0 || image_size > 16384)
        return vit_errf(VIT_E_ARG, err, errlen, "image size %d out of range", image_size);
    vit_preprocess p;
    memset(&p, 0, sizeof p);
    vit_status st = md_preprocessor(md, err, errlen);
    if (st) return st;
    if (md->preprocessor) {
        st = pp_from_hf(md->preprocessor, image_size, &p, md->dir, err, errlen);
    } else {
        if ((st = md_config(md, 0, err, errlen))) return st;
        const cJSON *pc = cJSON_GetObjectItemCaseSensitive(md->config, "pretrained_cfg");
        if (cJSON_IsObject(pc)) st = pp_from_timm(pc, image_size, &p, md->dir, err, errlen);
        else pp_default(md->config, image_size, &p);
    }
    if (st) return st;
    if ((st = pp_channels(md, &p, err, errlen))) return st;
    for (int c = 0; c < 3; c++)
        if (p.do_normalize && !(p.std[c] != 0.f && isfinite(p.std[c]) && isfinite(p.mean[c])))
            return vit_errf(VIT_E_CONFIG, err, errlen, "%s: std must be finite and non-zero", md->dir);
    if (p.do_resize && p.shortest_edge <= 0 && (p.resize_h <= 0 || p.resize_w <= 0))
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s: bad resize size", md->dir);
    *out = p;
    return VIT_OK;
}

vit_status vit_preprocess_load(const char *model_dir_path, int image_size, vit_preprocess *out,
                               char *err, size_t errlen) {
    if (!model_dir_path || !out) return vit_errf(VIT_E_ARG, err, errlen, "vit_preprocess_load: missing argument");
    if (image_size < 0 || image_size > 16384)
        return vit_errf(VIT_E_ARG, err, errlen, "image size %d out of range", image_size);
    model_dir md;
    vit_status st = md_open(model_dir_path, &md, err, errlen);
    if (st) return st;
    st = md_preprocess(&md, image_size, out, err, errlen);
    md_close(&md);
    return st;
}
