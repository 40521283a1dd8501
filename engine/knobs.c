/* knobs.c: every environment knob of the engine in one table (name, type, allowed values,
 * default, one line of doc), read and validated here and nowhere else.
 *
 * The table's `allowed` text is the single source of what a knob accepts:
 *   bool  "0|1"
 *   int   "LO..HI" (a range) or "A|B|C" (a list of numbers); the value is the number
 *   enum  "a|b|c"; the value is the index of the choice
 * vit_knobs_load reads the environment (an empty variable counts as unset), validates every
 * knob, and only when all are valid publishes the values; vit_model_load and vit_session_new call
 * it, so a knob changed between sessions takes effect at the next one and a bad value fails
 * there with VIT_E_ARG.  Values are atomics: getters on any thread see a whole value. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knobs.h"
#include "util.h"

typedef struct {
    const char *name;
    const char *type;    /* "bool", "int", "enum" */
    const char *allowed; /* see the top comment */
    const char *def;     /* default, as the environment would spell it */
    const char *doc;     /* one line */
} knob_row;

static const knob_row knob_table[VIT_KNOB_COUNT] = {
    [VIT_KNOB_CPU_PARALLEL] = {"VIT_CPU_PARALLEL", "enum", "auto|ops|images", "auto",
        "how CPU threads share a batch: auto (by image from 2 images per thread, else op by op), ops, images"},
    [VIT_KNOB_GEMM] = {"VIT_GEMM", "enum", "auto|openblas|avx512", "auto",
        "CPU FP32 GEMM: auto (own AVX-512 GEMM on AVX-512 CPUs unless OpenBLAS runs AVX-512 kernels), openblas, avx512"},
    [VIT_KNOB_GEMM_I8] = {"VIT_GEMM_I8", "enum", "auto|avx2|scalar", "auto",
        "CPU int8 GEMM kernel: auto (AVX512-VNNI, else AVX2, else the portable loop), or capped at avx2 or scalar"},
    [VIT_KNOB_NO_F16C] = {"VIT_NO_F16C", "bool", "0|1", "0",
        "1: FP16 conversions use the portable C code instead of F16C (read once per process)"},
    [VIT_KNOB_CUDA_GELU] = {"VIT_CUDA_GELU", "enum", "epilogue|erf", "epilogue",
        "CUDA fc1 GELU: cuBLASLt's GELU epilogue, or erf (BIAS epilogue + the exact GELU kernel)"},
    [VIT_KNOB_CUDA_ATTN] = {"VIT_CUDA_ATTN", "enum", "mma|wmma", "mma",
        "CUDA attention for head dim 64: the flash-style mma.sync kernel, or the WMMA one"},
    [VIT_KNOB_CUDA_ATTN_KC] = {"VIT_CUDA_ATTN_KC", "int", "16|32|64", "64",
        "keys per online-softmax step of the mma.sync attention kernel"},
    [VIT_KNOB_CUDA_ATTN_QT] = {"VIT_CUDA_ATTN_QT", "int", "1|2", "1",
        "16-row query tiles per warp of the mma.sync attention kernel"},
    [VIT_KNOB_CUDA_GEMM_TUNE] = {"VIT_CUDA_GEMM_TUNE", "bool", "0|1", "1",
        "time cuBLASLt's candidate algorithms per GEMM shape (0: take the heuristic's first)"},
    [VIT_KNOB_CUDA_GEMM_ALGOS] = {"VIT_CUDA_GEMM_ALGOS", "int", "1..16", "4",
        "how many of cuBLASLt's heuristic candidates to time per GEMM shape"},
    [VIT_KNOB_CUDA_CLS_ONLY] = {"VIT_CUDA_CLS_ONLY", "bool", "0|1", "1",
        "run the last layer's projection and MLP on the pooled token rows only (0: every row)"},
    [VIT_KNOB_CUDA_RESFUSE] = {"VIT_CUDA_RESFUSE", "bool", "0|1", "1",
        "add the residual in the proj/fc2 GEMM epilogue (0: LayerNorm adds it)"},
    [VIT_KNOB_CUDA_SUBBATCH] = {"VIT_CUDA_SUBBATCH", "int", "0..65536", "128",
        "batches above N images run as parts of N, one part's input copy overlapping the last's compute (0: never split)"},
    [VIT_KNOB_CUDA_WARMUP] = {"VIT_CUDA_WARMUP", "bool", "0|1", "1",
        "pick GEMM algorithms and capture every batch bucket's CUDA graph at session start (0: on first use)"},
};

/* ---- parsing ------------------------------------------------------------------------ */

/* a whole decimal integer in [INT_MIN, INT_MAX]: 0, or -1 on anything else */
static int parse_int(const char *s, size_t n, int *out) {
    char buf[24];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    if (!(buf[0] == '-' || buf[0] == '+' || (buf[0] >= '0' && buf[0] <= '9'))) return -1;
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || *end || v < INT_MIN || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

/* the "A|B|C" list: index of the token equal to text, or -1 */
static int choice_index(const char *list, const char *text) {
    size_t tl = strlen(text);
    int i = 0;
    for (const char *p = list;; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == tl && !strncmp(p, text, n)) return i;
        if (!bar) return -1;
        p = bar + 1;
    }
}

vit_status vit_knob_parse(vit_knob_id id, const char *text, int *value, char *err, size_t errlen) {
    if ((unsigned)id >= VIT_KNOB_COUNT || !value)
        return vit_errf(VIT_E_ARG, err, errlen, "vit_knob_parse: bad arguments");
    const knob_row *k = &knob_table[id];
    const char *t = text && *text ? text : k->def;
    const char *dots = strstr(k->allowed, "..");
    int v;
    if (!strcmp(k->type, "enum")) {
        if ((v = choice_index(k->allowed, t)) >= 0) { *value = v; return VIT_OK; }
    } else if (dots) {
        int lo, hi;
        if (parse_int(k->allowed, (size_t)(dots - k->allowed), &lo) == 0 &&
            parse_int(dots + 2, strlen(dots + 2), &hi) == 0 && parse_int(t, strlen(t), &v) == 0 &&
            v >= lo && v <= hi) { *value = v; return VIT_OK; }
    } else if (choice_index(k->allowed, t) >= 0 && parse_int(t, strlen(t), &v) == 0) {
        *value = v;
        return VIT_OK;
    }
    return vit_errf(VIT_E_ARG, err, errlen, "environment knob %s=\"%.40s\": allowed %s%s (default %s; `vit knobs` lists them)",
                    k->name, t, dots ? "an integer in " : "one of ", k->allowed, k->def);
}

vit_status vit_knobs_parse_all(const char *(*lookup)(const char *name, void *ctx), void *ctx,
                               int *values, unsigned *set_mask, char *err, size_t errlen) {
    unsigned set = 0;
    for (int i = 0; i < VIT_KNOB_COUNT; i++) {
        const char *t = lookup(knob_table[i].name, ctx);
        if (t && *t) set |= 1u << i;
        vit_status st = vit_knob_parse((vit_knob_id)i, t, &values[i], err, errlen);
        if (st != VIT_OK) return st;
    }
    if (set_mask) *set_mask = set;
    return VIT_OK;
}

/* ---- the values in effect ----------------------------------------------------------- */

static atomic_int g_values[VIT_KNOB_COUNT];
static atomic_uint g_set;
static atomic_int g_loaded;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *env_lookup(const char *name, void *ctx) {
    (void)ctx;
    return getenv(name);
}

/* defaults when the first load fails, so the getters never see zeros */
static void publish(const int *v, unsigned set) {
    for (int i = 0; i < VIT_KNOB_COUNT; i++) atomic_store(&g_values[i], v[i]);
    atomic_store(&g_set, set);
    atomic_store(&g_loaded, 1);
}

vit_status vit_knobs_load(char *err, size_t errlen) {
    int v[VIT_KNOB_COUNT];
    unsigned set = 0;
    pthread_mutex_lock(&g_lock);
    vit_status st = vit_knobs_parse_all(env_lookup, NULL, v, &set, err, errlen);
    if (st == VIT_OK) {
        publish(v, set);
    } else if (!atomic_load(&g_loaded)) {
        for (int i = 0; i < VIT_KNOB_COUNT; i++) vit_knob_parse((vit_knob_id)i, NULL, &v[i], NULL, 0);
        publish(v, 0);
    }
    pthread_mutex_unlock(&g_lock);
    return st;
}

int vit_knob_int(vit_knob_id id) {
    if ((unsigned)id >= VIT_KNOB_COUNT) return 0;
    if (!atomic_load(&g_loaded)) vit_knobs_load(NULL, 0);
    return atomic_load(&g_values[id]);
}

int vit_knob_is(vit_knob_id id, const char *choice) {
    if ((unsigned)id >= VIT_KNOB_COUNT || strcmp(knob_table[id].type, "enum")) return 0;
    return choice_index(knob_table[id].allowed, choice) == vit_knob_int(id);
}

/* ---- listing (vit.h) ----------------------------------------------------------------- */

int vit_knob_count(void) { return VIT_KNOB_COUNT; }

int vit_knob_info_get(int i, vit_knob_info *out) {
    if (i < 0 || i >= VIT_KNOB_COUNT || !out) return -1;
    const knob_row *k = &knob_table[i];
    int v = vit_knob_int((vit_knob_id)i);
    *out = (vit_knob_info){.name = k->name, .type = k->type, .allowed = k->allowed,
                           .default_value = k->def, .doc = k->doc,
                           .from_env = !!(atomic_load(&g_set) & (1u << i))};
    if (!strcmp(k->type, "enum")) {
        const char *p = k->allowed;
        for (int j = 0; j < v && p; j++) p = strchr(p, '|') ? strchr(p, '|') + 1 : NULL;
        size_t n = p ? strcspn(p, "|") : 0;
        snprintf(out->value, sizeof out->value, "%.*s", (int)n, p ? p : "");
    } else {
        snprintf(out->value, sizeof out->value, "%d", v);
    }
    return 0;
}

size_t vit_knobs_summary(char *buf, size_t n) {
    size_t len = 0;
    for (int i = 0; i < VIT_KNOB_COUNT; i++) {
        vit_knob_info ki;
        vit_knob_info_get(i, &ki);
        int w = snprintf(buf && len < n ? buf + len : NULL, buf && len < n ? n - len : 0, "%s%s=%s",
                         i ? " " : "", ki.name, ki.value);
        if (w > 0) len += (size_t)w;
    }
    return len;
}
