/* test_knobs.c: the environment knob registry (engine/knobs.c): every default parses; bool, range,
 * number-list and enum knobs accept exactly what their table row allows and refuse the rest with
 * a message naming the knob; a whole environment is validated at once; vit_knobs_load publishes
 * only a valid environment; vit_model_load and vit_session_new fail on a bad knob; the listing
 * (vit_knob_info_get, vit_knobs_summary) reports the values in effect. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "knobs.h"

#define MODEL "tests/fixtures/models/tiny-hf"

typedef struct { const char *name, *value; } kv;

/* lookup over a NULL-terminated kv list */
static const char *kv_lookup(const char *name, void *ctx) {
    for (const kv *p = ctx; p->name; p++)
        if (!strcmp(p->name, name)) return p->value;
    return NULL;
}

/* parse text for knob id: 1 when it is accepted with value want, or refused (want_ok 0) with a
 * message that names the knob */
static int parses(vit_knob_id id, const char *text, int want_ok, int want) {
    char err[256] = "";
    int v = -12345;
    vit_status st = vit_knob_parse(id, text, &v, err, sizeof err);
    vit_knob_info ki;
    vit_knob_info_get((int)id, &ki);
    if (want_ok) return st == VIT_OK && v == want;
    return st == VIT_E_ARG && strstr(err, ki.name) && strstr(err, ki.allowed) && v == -12345;
}

static void test_parse(void) {
    int all = 1;
    for (int i = 0; i < VIT_KNOB_COUNT; i++) {
        vit_knob_info ki;
        int v;
        all &= vit_knob_info_get(i, &ki) == 0 && vit_knob_parse((vit_knob_id)i, ki.default_value, &v, NULL, 0) == VIT_OK;
        int d;
        all &= vit_knob_parse((vit_knob_id)i, NULL, &d, NULL, 0) == VIT_OK && d == v;   /* unset: the default */
        all &= vit_knob_parse((vit_knob_id)i, "", &d, NULL, 0) == VIT_OK && d == v;     /* empty: unset */
    }
    CHECK(all && vit_knob_count() == VIT_KNOB_COUNT && VIT_KNOB_COUNT == 14, "every knob's default parses (14 knobs)");
    CHECK(vit_knob_info_get(-1, &(vit_knob_info){0}) == -1 && vit_knob_info_get(VIT_KNOB_COUNT, &(vit_knob_info){0}) == -1,
          "knob index out of range refused");
    /* bool */
    CHECK(parses(VIT_KNOB_CUDA_WARMUP, "0", 1, 0) && parses(VIT_KNOB_CUDA_WARMUP, "1", 1, 1) &&
          parses(VIT_KNOB_CUDA_WARMUP, NULL, 1, 1) && parses(VIT_KNOB_NO_F16C, NULL, 1, 0), "bool: 0, 1, default");
    CHECK(parses(VIT_KNOB_CUDA_WARMUP, "false", 0, 0) && parses(VIT_KNOB_CUDA_WARMUP, "2", 0, 0) &&
          parses(VIT_KNOB_NO_F16C, "yes", 0, 0) && parses(VIT_KNOB_NO_F16C, "01", 0, 0) &&
          parses(VIT_KNOB_NO_F16C, " 1", 0, 0), "bool: false, 2, yes, 01, ' 1' refused");
    /* range */
    CHECK(parses(VIT_KNOB_CUDA_GEMM_ALGOS, "1", 1, 1) && parses(VIT_KNOB_CUDA_GEMM_ALGOS, "16", 1, 16) &&
          parses(VIT_KNOB_CUDA_GEMM_ALGOS, NULL, 1, 4) && parses(VIT_KNOB_CUDA_SUBBATCH, "0", 1, 0) &&
          parses(VIT_KNOB_CUDA_SUBBATCH, "65536", 1, 65536), "range: both ends and the default");
    CHECK(parses(VIT_KNOB_CUDA_GEMM_ALGOS, "0", 0, 0) && parses(VIT_KNOB_CUDA_GEMM_ALGOS, "17", 0, 0) &&
          parses(VIT_KNOB_CUDA_GEMM_ALGOS, "-1", 0, 0) && parses(VIT_KNOB_CUDA_GEMM_ALGOS, "4x", 0, 0) &&
          parses(VIT_KNOB_CUDA_GEMM_ALGOS, "abc", 0, 0) && parses(VIT_KNOB_CUDA_SUBBATCH, "99999999999999999999", 0, 0) &&
          parses(VIT_KNOB_CUDA_SUBBATCH, "65537", 0, 0), "range: 0, 17, -1, 4x, abc, overflow, 65537 refused");
    /* a list of numbers */
    CHECK(parses(VIT_KNOB_CUDA_ATTN_KC, "16", 1, 16) && parses(VIT_KNOB_CUDA_ATTN_KC, "32", 1, 32) &&
          parses(VIT_KNOB_CUDA_ATTN_KC, "64", 1, 64) && parses(VIT_KNOB_CUDA_ATTN_QT, "2", 1, 2),
          "number list: 16, 32, 64; QT 2");
    CHECK(parses(VIT_KNOB_CUDA_ATTN_KC, "48", 0, 0) && parses(VIT_KNOB_CUDA_ATTN_KC, "6", 0, 0) &&
          parses(VIT_KNOB_CUDA_ATTN_KC, "164", 0, 0) && parses(VIT_KNOB_CUDA_ATTN_QT, "3", 0, 0),
          "number list: 48, 6, 164 (prefix/suffix of a choice), QT 3 refused");
    /* enum */
    CHECK(parses(VIT_KNOB_GEMM, "auto", 1, 0) && parses(VIT_KNOB_GEMM, "openblas", 1, 1) &&
          parses(VIT_KNOB_GEMM, "avx512", 1, 2) && parses(VIT_KNOB_CPU_PARALLEL, "images", 1, 2) &&
          parses(VIT_KNOB_CUDA_GELU, "erf", 1, 1), "enum: every choice gives its index");
    CHECK(parses(VIT_KNOB_GEMM, "OpenBLAS", 0, 0) && parses(VIT_KNOB_GEMM, "open", 0, 0) &&
          parses(VIT_KNOB_GEMM, "auto|openblas", 0, 0) && parses(VIT_KNOB_CPU_PARALLEL, "1", 0, 0) &&
          parses(VIT_KNOB_GEMM_I8, "vnni", 0, 0), "enum: wrong case, prefix, the list itself, 1, vnni refused");
}

static void test_parse_all(void) {
    int v[VIT_KNOB_COUNT];
    unsigned set = 99;
    char err[256] = "";
    kv good[] = {{"VIT_GEMM", "openblas"}, {"VIT_CUDA_SUBBATCH", "32"}, {"VIT_NO_F16C", ""}, {NULL, NULL}};
    CHECK(vit_knobs_parse_all(kv_lookup, good, v, &set, err, sizeof err) == VIT_OK && v[VIT_KNOB_GEMM] == 1 &&
          v[VIT_KNOB_CUDA_SUBBATCH] == 32 && v[VIT_KNOB_CUDA_GEMM_ALGOS] == 4 &&
          set == ((1u << VIT_KNOB_GEMM) | (1u << VIT_KNOB_CUDA_SUBBATCH)), "parse_all: set knobs, defaults, empty = unset");
    kv bad[] = {{"VIT_GEMM", "openblas"}, {"VIT_CUDA_GEMM_TUNE", "off"}, {NULL, NULL}};
    CHECK(vit_knobs_parse_all(kv_lookup, bad, v, &set, err, sizeof err) == VIT_E_ARG &&
          strstr(err, "VIT_CUDA_GEMM_TUNE=\"off\"") && strstr(err, "0|1"), "parse_all: one bad knob fails all: %s", err);
}

static void test_load_and_list(void) {
    char err[256] = "";
    setenv("VIT_GEMM", "openblas", 1);
    setenv("VIT_CUDA_ATTN_KC", "32", 1);
    CHECK(vit_knobs_load(err, sizeof err) == VIT_OK && vit_knob_is(VIT_KNOB_GEMM, "openblas") &&
          !vit_knob_is(VIT_KNOB_GEMM, "auto") && vit_knob_int(VIT_KNOB_CUDA_ATTN_KC) == 32, "load: values in effect");
    vit_knob_info ki;
    CHECK(vit_knob_info_get(VIT_KNOB_GEMM, &ki) == 0 && !strcmp(ki.value, "openblas") && ki.from_env &&
          !strcmp(ki.default_value, "auto") && !strcmp(ki.type, "enum") && ki.doc[0],
          "info: enum value, from_env, default, type, doc");
    CHECK(vit_knob_info_get(VIT_KNOB_CUDA_SUBBATCH, &ki) == 0 && !strcmp(ki.value, "128") && !ki.from_env,
          "info: int default, not from env");
    char line[1024];
    size_t n = vit_knobs_summary(line, sizeof line);
    CHECK(n == strlen(line) && strstr(line, "VIT_GEMM=openblas") && strstr(line, "VIT_CUDA_ATTN_KC=32") &&
          strstr(line, "VIT_CUDA_WARMUP=1") && !strncmp(line, "VIT_CPU_PARALLEL=auto ", 22), "summary: %s", line);
    char small[12];
    CHECK(vit_knobs_summary(small, sizeof small) == n && strlen(small) == sizeof small - 1, "summary truncates, returns the whole length");

    setenv("VIT_GEMM", "fastest", 1);
    CHECK(vit_knobs_load(err, sizeof err) == VIT_E_ARG && strstr(err, "VIT_GEMM=\"fastest\"") &&
          strstr(err, "auto|openblas|avx512"), "load: bad value refused: %s", err);
    CHECK(vit_knob_is(VIT_KNOB_GEMM, "openblas") && vit_knob_int(VIT_KNOB_CUDA_ATTN_KC) == 32,
          "load: a refused environment leaves the values in effect");

    vit_model *m = NULL;
    err[0] = 0;
    CHECK(vit_model_load(MODEL, NULL, &m, err, sizeof err) == VIT_E_ARG && !m && strstr(err, "VIT_GEMM"),
          "vit_model_load fails on a bad knob: %s", err);
    unsetenv("VIT_GEMM");
    CHECK(vit_model_load(MODEL, NULL, &m, err, sizeof err) == VIT_OK && m && !vit_knob_is(VIT_KNOB_GEMM, "openblas"),
          "vit_model_load after the fix: loads, knob back to its default");
    setenv("VIT_CPU_PARALLEL", "threads", 1);
    vit_session *s = NULL;
    vit_session_opts so = {.max_batch = 1, .threads = 1, .device = VIT_DEVICE_CPU};
    err[0] = 0;
    CHECK(m && vit_session_new(m, &so, &s, err, sizeof err) == VIT_E_ARG && !s && strstr(err, "VIT_CPU_PARALLEL"),
          "vit_session_new fails on a bad knob: %s", err);
    unsetenv("VIT_CPU_PARALLEL");
    setenv("VIT_CPU_PARALLEL", "ops", 1);
    CHECK(m && vit_session_new(m, &so, &s, err, sizeof err) == VIT_OK && s && vit_knob_is(VIT_KNOB_CPU_PARALLEL, "ops"),
          "vit_session_new reads the knobs as it starts");
    vit_session_free(s);
    vit_model_free(m);
    unsetenv("VIT_CPU_PARALLEL");
    unsetenv("VIT_CUDA_ATTN_KC");
}

int main(void) {
    test_parse();
    test_parse_all();
    test_load_and_list();
    return TEST_SUMMARY();
}
