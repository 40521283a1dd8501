/* main.c: vitd, the image-classification daemon, and its composition root: flags (each also
 * VITD_<NAME> in the environment; flags win; secrets only from the environment or a file, never
 * printed), the shared state (one srv_state, handed to every
 * module), start-up (listen, load the model, sessions, warm-up, admin API, then ready), systemd
 * notify, and the graceful drain on SIGTERM/SIGINT. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "embed.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "routes.h"
#include "sdnotify.h"
#include "server.h"
#include "store_dir.h"
#include "store_pg.h"
#include "trainer.h"
#include "ui.h"
#include "util.h"
#include "v2_http.h"

/* SIGTERM/SIGINT that reach a thread started before main (OpenBLAS's pool, created by a
 * library constructor, does not block them) run this instead of the default action (death);
 * the main loop picks the signal up.  A signal handler can reach nothing else: this static is
 * the one piece of state in main.c outside main's srv_state. */
static volatile sig_atomic_t g_stop_sig;
static void on_stop_signal(int sig) { g_stop_sig = sig; }

/* ---- flags ---------------------------------------------------------------------------- */

/* What the flags set: the configuration plus the flags parsed into it after the table. */
typedef struct opts {
    srv_config cfg;
    const char *model, *host, *device, *precision, *log, *log_format, *input, *ui;
    const char *admin_token_file, *admin_token, *state_dir, *cors_origin, *state_url, *state_password_file, *instance_name;
    long max_body_mb, max_inflight_body_mb, max_image_cost_m, max_request_cost_m;
    char host_name[256];          /* the default --instance-name */
} opts;

/* F_SECRET: a string taken only from the environment (a command line is visible to every user
 * through ps and /proc) and never printed: --help shows no value, errors do not echo it. */
typedef enum { F_STR, F_INT, F_LONG, F_MB, F_U64, F_DEVICE, F_PREC, F_LOG, F_INPUT, F_LOGFMT, F_ONOFF, F_SECRET } ftype;
typedef struct { const char *name; ftype t; size_t off; long lo, hi; const char *help; } flag;
#define O(field) offsetof(opts, field)

static const flag flags[] = {
    {"model", F_STR, O(model), 0, 0, "model directory (config.json + model.safetensors)"},
    {"host", F_STR, O(host), 0, 0, "address to listen on (IPv4 or IPv6)"},
    {"port", F_INT, O(cfg.port), 0, 65535, "TCP port (0: any free port, logged)"},
    {"max-batch", F_INT, O(cfg.max_batch), 1, 1024, "largest batch one forward runs"},
    {"max-delay-us", F_LONG, O(cfg.max_delay_us), 0, 10000000, "longest wait for a batch to fill, from its first image"},
    {"eager-dispatch", F_INT, O(cfg.eager_dispatch), 0, 1, "1: an idle worker runs a partial batch when no more images are on the way (0: wait)"},
    {"max-queue", F_INT, O(cfg.max_queue), 1, 1000000, "images admitted and not yet running; beyond: 503"},
    {"workers", F_INT, O(cfg.workers), 1, 64, "engine sessions; each runs whole batches from the shared queue"},
    {"threads", F_INT, O(cfg.threads), 0, 256, "engine threads per session (0: all cores)"},
    {"decoders", F_INT, O(cfg.decoders), 0, 256, "image decode threads (0: number of cores)"},
    {"decode-nice", F_INT, O(cfg.decode_nice), 0, 19, "nice level of decode threads (> 0: the engine gets the cores first)"},
    {"fast-decode", F_INT, O(cfg.fast_decode), 0, 1, "1: big JPEGs decode at 1/2..1/8 scale in the DCT domain (faster, not PIL-exact)"},
    {"http-threads", F_INT, O(cfg.http_threads), 1, 256, "HTTP threads (libmicrohttpd pool)"},
    {"max-body-mb", F_LONG, O(max_body_mb), 1, 4096, "largest request body in MiB; beyond: 413"},
    {"max-pixels", F_U64, O(cfg.max_pixels), 1, 0, "largest image (width*height); beyond: 413"},
    {"max-images", F_INT, O(cfg.max_images), 1, 64, "images per request"},
    {"max-top-k", F_INT, O(cfg.max_top_k), 1, SRV_TOPK_MAX, "largest top_k a request may ask"},
    {"max-connections", F_INT, O(cfg.max_connections), 1, 1000000, "open connections; beyond: 503 at once and closed"},
    {"max-connections-per-ip", F_INT, O(cfg.max_connections_per_ip), 0, 1000000, "open connections from one client address; beyond: closed at once (0: no cap)"},
    {"request-timeout-s", F_INT, O(cfg.request_timeout_s), 1, 86400, "idle or slow client timeout"},
    {"header-timeout-s", F_INT, O(cfg.header_timeout_s), 0, 86400, "the whole request header block must arrive within this, from connect or the previous reply; beyond: closed (0: none)"},
    {"body-grace-s", F_INT, O(cfg.body_grace_s), 0, 86400, "seconds before --min-body-rate-kb applies to a body"},
    {"min-body-rate-kb", F_LONG, O(cfg.min_body_rate_kb), 0, 1048576, "slowest average upload, KiB/s since the body began (after the grace); slower: closed (0: none)"},
    {"max-inflight-body-mb", F_LONG, O(max_inflight_body_mb), 1, 1048576, "MiB of request bodies held at once, all connections; beyond: 503 + Retry-After"},
    {"max-image-cost-m", F_LONG, O(max_image_cost_m), 0, 1000000000, "decode cost per image, M samples (pixels x components x scans, from the headers); beyond: 413 (0: no cap)"},
    {"max-request-cost-m", F_LONG, O(max_request_cost_m), 0, 1000000000, "decode cost of a request's images together, M samples; beyond: 413 for the rest (0: no cap)"},
    {"max-scans", F_INT, O(cfg.max_scans), 1, 100000, "JPEG scans per image; beyond: 422"},
    {"queue-timeout-ms", F_LONG, O(cfg.queue_timeout_ms), 0, 3600000, "longest an admitted image waits for a decoder and a batch; beyond: 504 (0: none)"},
    {"drain-timeout-s", F_INT, O(cfg.drain_timeout_s), 0, 86400, "on SIGTERM, longest wait for accepted requests and a training job's hand-over"},
    {"device", F_DEVICE, O(device), 0, 0, "auto|cpu|cuda"},
    {"precision", F_PREC, O(precision), 0, 0, "auto|fp32|fp16|int8|fp8 (auto: fp16 on cuda, fp32 on cpu; int8/fp8 on cuda need DIR/calibration.json)"},
    {"input", F_INPUT, O(input), 0, 0, "auto|fp32|fp16: pixel type of the batch buffers (auto: what the engine reads fastest, fp16 on cuda; same results either way)"},
    {"device-check", F_INT, O(cfg.device_check), 0, 1, "1: on cuda, check 2 images against the CPU before serving (mismatch: auto uses the CPU, cuda exits)"},
    {"log-level", F_LOG, O(log), 0, 0, "error|warn|info|debug (info logs every request)"},
    {"log-format", F_LOGFMT, O(log_format), 0, 0, "text|json: json writes one object a line (time, level, msg; requests: request_id, method, path, status, duration_ms, images, head_version, client, trace_id)"},
    {"cors-origin", F_STR, O(cors_origin), 0, 0, "browser origins allowed to call the API: * or a comma-separated list (none: no CORS headers)"},
    {"admin-token-file", F_STR, O(admin_token_file), 0, 0, "file holding the admin API bearer token (else VITD_ADMIN_TOKEN; none: admin API off)"},
    {"admin-token", F_SECRET, O(admin_token), 0, 0, "the admin API bearer token itself, when there is no --admin-token-file"},
    {"state-dir", F_STR, O(state_dir), 0, 0, "directory where the admin API keeps examples and head versions (one vitd; locked)"},
    {"state-url", F_STR, O(state_url), 0, 0, "postgresql://user@host/db: the admin store shared by several replicas (instead of --state-dir)"},
    {"state-password-file", F_STR, O(state_password_file), 0, 0, "file holding the --state-url password (else PGPASSWORD / PGPASSFILE)"},
    {"instance-name", F_STR, O(instance_name), 0, 0, "this replica's name in /v1/models, /metrics and job ownership (default: the host name)"},
    {"job-lease-s", F_INT, O(cfg.job_lease_s), 2, 86400, "with --state-url: a training job's claim lapses (another replica takes it) after this long unrenewed"},
    {"ui", F_ONOFF, O(ui), 0, 0, "on|off: the web page at / (try images, attention maps, the model card, teach labels)"},
};
#define NFLAGS (int)(sizeof flags / sizeof flags[0])

/* the flag's environment variable: VITD_ and the name upper-cased, '-' as '_' */
static void flag_env(const flag *f, char *env, size_t n) {
    size_t l = (size_t)snprintf(env, n, "VITD_");
    for (const char *s = f->name; *s && l + 1 < n; s++)
        env[l++] = *s == '-' ? '_' : (char)(*s >= 'a' && *s <= 'z' ? *s - 32 : *s);
    env[l] = '\0';
}

static void flag_default_str(const opts *o, const flag *f, char *buf, size_t n) {
    const void *p = (const char *)o + f->off;
    switch (f->t) {
    case F_STR: case F_DEVICE: case F_PREC: case F_LOG: case F_INPUT: case F_LOGFMT: case F_ONOFF: snprintf(buf, n, "%s", *(char *const *)p ? *(char *const *)p : ""); break;
    case F_SECRET: snprintf(buf, n, "%s", ""); break;   /* never the value */
    case F_INT: snprintf(buf, n, "%d", *(const int *)p); break;
    case F_LONG: case F_MB: snprintf(buf, n, "%ld", *(const long *)p); break;
    case F_U64: snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    }
}

static void usage(const opts *opt, FILE *o) {
    fprintf(o, "usage: vitd [flags]\n"
               "Serve a Vision Transformer image classifier over HTTP: POST /classify, GET /healthz,\n"
               "/readyz, /v1/models, /metrics, and a web page at / (--ui).  Every flag can also be set\n"
               "as VITD_<NAME> in the environment (e.g. VITD_MAX_BATCH=16); flags win over the\n"
               "environment.\n\nflags:\n");
    for (int i = 0; i < NFLAGS; i++) {
        char def[128], env[64], arg[40];
        flag_default_str(opt, &flags[i], def, sizeof def);
        flag_env(&flags[i], env, sizeof env);
        if (flags[i].t == F_SECRET) {   /* listed by its variable: there is no such flag */
            fprintf(o, "  %-20s %s\n  %-20s (secret: environment only, never printed)\n", env, flags[i].help, "");
            continue;
        }
        snprintf(arg, sizeof arg, "--%s", flags[i].name);
        fprintf(o, "  %-20s %s\n  %-20s (default: %s; env %s)\n", arg, flags[i].help, "", def[0] ? def : "-", env);
    }
    fprintf(o, "  %-20s this help; the version (commit, build type, CUDA compiled in or not)\n", "--help, --version");
}

static int set_flag(opts *o, const flag *f, const char *v, const char *src) {
    void *p = (char *)o + f->off;
    char *end;
    errno = 0;
    switch (f->t) {
    case F_STR: case F_SECRET: *(const char **)p = v; return 0;
    case F_DEVICE:
        if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "cuda")) break;
        *(const char **)p = v; return 0;
    case F_PREC:
        { vit_precision p; if (vit_precision_parse(v, &p) != 0) break; }
        *(const char **)p = v; return 0;
    case F_INPUT:
        if (strcmp(v, "auto") && strcmp(v, "fp32") && strcmp(v, "fp16")) break;
        *(const char **)p = v; return 0;
    case F_LOGFMT:
        if (strcmp(v, "text") && strcmp(v, "json")) break;
        *(const char **)p = v; return 0;
    case F_ONOFF:
        if (strcmp(v, "on") && strcmp(v, "off")) break;
        *(const char **)p = v; return 0;
    case F_LOG:
        if (strcmp(v, "error") && strcmp(v, "warn") && strcmp(v, "info") && strcmp(v, "debug")) break;
        *(const char **)p = v; return 0;
    case F_INT: case F_LONG: case F_MB: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < f->lo || x > f->hi) break;
        if (f->t == F_INT) *(int *)p = (int)x; else *(long *)p = x;
        return 0;
    }
    case F_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno || x < (unsigned long long)f->lo || *v == '-') break;
        *(uint64_t *)p = (uint64_t)x;
        return 0;
    }
    }
    if (f->t == F_INT || f->t == F_LONG || f->t == F_MB)
        fprintf(stderr, "vitd: %s --%s: invalid value '%s' (an integer in [%ld, %ld])\n", src, f->name, v, f->lo, f->hi);
    else
        fprintf(stderr, "vitd: %s --%s: invalid value '%s'\n", src, f->name, v);
    return -1;
}

static int parse_flags(opts *o, int argc, char **argv) {
    for (int i = 0; i < NFLAGS; i++) {
        char env[64];
        flag_env(&flags[i], env, sizeof env);
        const char *v = getenv(env);
        if (v && set_flag(o, &flags[i], v, env) != 0) return -1;
    }
    for (int a = 1; a < argc; a++) {
        const char *s = argv[a];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { usage(o, stdout); exit(0); }
        if (!strcmp(s, "--version")) {
            char line[256];
            vit_build_line("vitd", line, sizeof line);
            printf("%s\n", line);
            exit(0);
        }
        /* Amazon SageMaker starts a serving container as `docker run IMAGE serve` */
        if (!strcmp(s, "serve")) continue;
        if (strncmp(s, "--", 2) != 0) { fprintf(stderr, "vitd: unexpected argument '%s' (see --help)\n", s); return -1; }
        s += 2;
        const char *eq = strchr(s, '=');
        size_t nl = eq ? (size_t)(eq - s) : strlen(s);
        int i;
        for (i = 0; i < NFLAGS; i++)
            if (strlen(flags[i].name) == nl && !strncmp(flags[i].name, s, nl)) break;
        if (i == NFLAGS) { fprintf(stderr, "vitd: unknown flag --%.*s (see --help)\n", (int)nl, s); return -1; }
        if (flags[i].t == F_SECRET) {
            char env[64];
            flag_env(&flags[i], env, sizeof env);
            fprintf(stderr, "vitd: --%s is not a flag: a command line is visible to every user (ps); set %s in the "
                            "environment%s\n", flags[i].name, env,
                    !strcmp(flags[i].name, "admin-token") ? " or use --admin-token-file" : "");
            return -1;
        }
        const char *v = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!v) { fprintf(stderr, "vitd: --%s needs a value\n", flags[i].name); return -1; }
        if (set_flag(o, &flags[i], v, "flag") != 0) return -1;
    }
    return 0;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* models/fashion-vit relative to the CWD, else to the executable's ../models */
static const char *default_model(void) {
    static char buf[PATH_MAX];
    if (is_dir("models/fashion-vit")) return "models/fashion-vit";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            if (strlen(exe) + 32 < sizeof buf) {
                strcpy(buf, exe);
                strcat(buf, "/../models/fashion-vit");
                if (is_dir(buf)) return buf;
                strcpy(buf, exe);   /* make install: PREFIX/bin/vitd, PREFIX/share/vitd/models */
                strcat(buf, "/../share/vitd/models/fashion-vit");
                if (is_dir(buf)) return buf;
            }
        }
    }
    return "models/fashion-vit";
}

/* ---- configuration ------------------------------------------------------------------------ */

/* Defaults, then the environment and the flags, into o->cfg.  0, or 2 (usage error). */
static int configure(opts *o, int argc, char **argv) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) ncpu = 1;
    *o = (opts){.cfg = {.port = 8080, .max_batch = 32, .max_delay_us = 2000, .eager_dispatch = 1, .device_check = 1,
                        .max_queue = 256, .workers = 1, .threads = 0, .decoders = 0, .http_threads = 2,
                        .max_pixels = VIT_DEFAULT_MAX_PIXELS, .drain_timeout_s = 30, .log_level = SRV_LOG_INFO,
                        .max_connections = 1024, .max_connections_per_ip = 256, .request_timeout_s = 30,
                        .header_timeout_s = 10, .body_grace_s = 10, .min_body_rate_kb = 16,
                        .max_scans = VIT_DEFAULT_MAX_SCANS, .queue_timeout_ms = 30000, .max_images = 64,
                        .max_top_k = SRV_TOPK_MAX, .job_lease_s = 30},
                .host = "127.0.0.1", .model = default_model(), .device = "auto", .precision = "auto", .log = "info", .log_format = "text",
                .input = "auto", .ui = "on", .admin_token_file = "", .admin_token = "", .state_dir = "", .cors_origin = "", .max_body_mb = 20,
                .max_inflight_body_mb = 512, .max_image_cost_m = 1000, .max_request_cost_m = 4000,
                .state_url = "", .state_password_file = "", .instance_name = ""};
    if (parse_flags(o, argc, argv) != 0) return 2;
    srv_config *C = &o->cfg;
    C->model_dir = o->model;
    C->admin_token_file = o->admin_token_file;
    C->state_dir = o->state_dir;
    C->state_url = o->state_url;
    C->state_password_file = o->state_password_file;
    C->cors_origin = o->cors_origin;
    if (*C->state_dir && *C->state_url) {
        fprintf(stderr, "vitd: --state-dir and --state-url exclude each other (one vitd: --state-dir; replicas: --state-url)\n");
        return 2;
    }
    if (!*o->instance_name && gethostname(o->host_name, sizeof o->host_name - 1) == 0) o->instance_name = o->host_name;
    C->instance_name = *o->instance_name ? o->instance_name : "vitd";
    C->host = o->host;
    C->max_body = (size_t)o->max_body_mb << 20;
    C->max_inflight_body = (size_t)o->max_inflight_body_mb << 20;
    C->max_image_cost = (uint64_t)o->max_image_cost_m * 1000000u;
    C->max_request_cost = (uint64_t)o->max_request_cost_m * 1000000u;
    C->log_format = !strcmp(o->log_format, "json") ? LOGFMT_JSON : LOGFMT_TEXT;
    C->log_level = !strcmp(o->log, "error") ? SRV_LOG_ERROR : !strcmp(o->log, "warn") ? SRV_LOG_WARN
                 : !strcmp(o->log, "debug") ? SRV_LOG_DEBUG : SRV_LOG_INFO;
    C->device = !strcmp(o->device, "cpu") ? VIT_DEVICE_CPU : !strcmp(o->device, "cuda") ? VIT_DEVICE_CUDA : VIT_DEVICE_AUTO;
    /* auto: the engine picks FP16 on CUDA and FP32 on the CPU */
    if (vit_precision_parse(o->precision, &C->precision) != 0) C->precision = VIT_PREC_AUTO;
    if (C->decoders == 0) C->decoders = (int)ncpu;
    return 0;
}

/* Blocks of 4 MiB and more (big request bodies, the pixels of big images) come from mmap and go
 * back to the system when freed: a fixed threshold stops glibc from raising it to the largest
 * block freed so far (up to 32 MiB, after which such blocks stay in the heap); the heap's top is
 * trimmed past 8 MiB.  Smaller blocks stay in the heap: a threshold of 256 KiB put every
 * ordinary image's pixel buffer through mmap, munmap and fresh page faults and cost a third of
 * the throughput (bench/results/loadtest_hostile.md). */
static void memory_return_setup(void) {
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
}

/* signals: handled synchronously by the main thread; every other thread blocks them */
static void block_signals(sigset_t *sigs) {
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- start-up ----------------------------------------------------------------------------- */

/* The backbone's fingerprint: model name, architecture, feature size and a 64-bit FNV-1a hash of
 * model.safetensors (the weights the features come from).  Examples and heads in a shared store
 * carry it, so replicas serving different checkpoints never mix them. */
static void model_fingerprint(srv_state *st) {
    uint64_t h = 1469598103934665603ULL;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/model.safetensors", st->cfg.model_dir);
    FILE *f = fopen(path, "rb");
    static unsigned char buf[1 << 20];   /* start-up only, one thread */
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 1099511628211ULL;
    if (f) fclose(f);
    snprintf(st->fingerprint, sizeof st->fingerprint, "%.63s/%.47s/%d/%016llx", st->model_name, st->mc->architecture,
             st->mc->feature_dim, (unsigned long long)h);
}

/* The model and its name (the directory's last component). */
static int load_model(srv_state *st, char *err, size_t errlen) {
    const srv_config *C = &st->cfg;
    if (vit_model_load(C->model_dir, NULL, &st->model, err, errlen) != VIT_OK) {
        srv_log(SRV_LOG_ERROR, "cannot load model %s: %s", C->model_dir, err);
        return -1;
    }
    st->mc = vit_model_config(st->model);
    char knobs[1024];   /* the engine's environment knobs in effect, once at start-up */
    if (vit_knobs_summary(knobs, sizeof knobs)) srv_log(SRV_LOG_INFO, "engine knobs: %s", knobs);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", C->model_dir);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/') tmp[--n] = '\0';
    const char *base = strrchr(tmp, '/');
    base = base ? base + 1 : tmp;
    size_t bl = strnlen(base, sizeof st->model_name - 1);
    memcpy(st->model_name, base, bl);
    st->model_name[bl] = '\0';
    model_fingerprint(st);
    return 0;
}

/* On CUDA (with --device-check 1) the accelerated path must agree with the CPU reference before
 * it serves anyone.  Returns 0 (agrees, or not checked), 1 (disagrees: device auto falls back to
 * the CPU) or -1 (disagrees on --device cuda: not serving). */
static int device_check(srv_state *st, char *err, size_t errlen) {
    const srv_config *C = &st->cfg;
    vit_device dev = batcher_device(st->batcher);
    vit_precision prec = batcher_precision(st->batcher);
    if (dev != VIT_DEVICE_CUDA || !C->device_check) return 0;
    vit_session_opts o = {.max_batch = 2, .threads = C->threads, .device = dev, .precision = prec};
    vit_check_result r;
    if (vit_device_check(st->model, &o, SRV_DEVICE_CHECK_TOL, &r, err, errlen) == VIT_OK) {
        srv_log(SRV_LOG_INFO, "device check: cuda/%s agrees with the CPU (relative error: features %.2g, logits %.2g, attention %.2g)",
                vit_precision_str(prec), r.features_err, r.logits_err, r.attn_err);
        return 0;
    }
    if (C->device != VIT_DEVICE_AUTO) {
        srv_log(SRV_LOG_ERROR, "%s (--device cuda: not serving; --device-check 0 skips the check)", err);
        return -1;
    }
    srv_log(SRV_LOG_ERROR, "%s; device auto: serving on the CPU instead", err);
    return 1;
}

/* The batcher (sessions, warm-up, decode pool), checked against the CPU on CUDA. */
static int start_engine(srv_state *st, const opts *o, char *err, size_t errlen) {
    const srv_config *C = &st->cfg;
    batcher_opts bo = {.max_batch = C->max_batch, .max_queue = C->max_queue, .workers = C->workers,
                       .threads = C->threads, .decoders = C->decoders, .max_delay_us = C->max_delay_us,
                       .eager_dispatch = C->eager_dispatch, .max_pixels = C->max_pixels,
                       .max_image_cost = C->max_image_cost, .max_request_cost = C->max_request_cost,
                       .max_scans = C->max_scans, .queue_timeout_s = (double)C->queue_timeout_ms * 1e-3,
                       .decoder_nice = C->decode_nice,
                       .fast_decode = C->fast_decode, .device = C->device, .precision = C->precision,
                       .input_f16 = !strcmp(o->input, "fp16") ? 1 : !strcmp(o->input, "fp32") ? -1 : 0};
    if (batcher_new(st->model, &bo, &st->batcher, err, errlen) != VIT_OK) {
        srv_log(SRV_LOG_ERROR, "cannot start the engine: %s", err);
        return -1;
    }
    int chk = device_check(st, err, errlen);
    if (chk < 0) return -1;
    if (chk > 0) {
        batcher_free(st->batcher);
        st->batcher = NULL;
        bo.device = VIT_DEVICE_CPU;
        bo.precision = VIT_PREC_AUTO;
        if (batcher_new(st->model, &bo, &st->batcher, err, errlen) != VIT_OK) {
            srv_log(SRV_LOG_ERROR, "cannot start the engine on the CPU: %s", err);
            return -1;
        }
    }
    vit_device dev = batcher_device(st->batcher);
    if (C->device == VIT_DEVICE_AUTO && dev == VIT_DEVICE_CPU) srv_log(SRV_LOG_INFO, "device auto: no CUDA device, using the CPU");
    metrics_model_info(st->model_name, st->mc->architecture, dev == VIT_DEVICE_CUDA ? "cuda" : "cpu",
                       vit_precision_str(batcher_precision(st->batcher)), st->mc->image_size, st->mc->num_classes,
                       C->max_batch);
    return 0;
}

/* ---- the admin API -------------------------------------------------------------------------- */

/* What the admin API is made of; all NULL/zero when it is not started. */
typedef struct admin_parts {
    adm_store store;
    int store_open;
    trainer *trainer;
    admin_http *http;
} admin_parts;

/* The store's on_active hook: the head later batches use (batches already running finish with
 * the old one).  Refused when the head does not fit the model. */
static int apply_head(void *ctx, int version, vit_head *h) {
    srv_state *st = ctx;
    if (!h || !st->batcher || vit_head_dim(h) != st->mc->feature_dim) return -1;
    batcher_set_head_version(st->batcher, h, version);
    return 0;
}

/* The store: PostgreSQL with --state-url, else the state directory (or memory). */
static int open_store(srv_state *st, admin_parts *ad, char *err, size_t errlen) {
    const srv_config *C = &st->cfg;
    char mp[4096];   /* version 1's creation time: the checkpoint file's modification time */
    struct stat sb;
    double created = 0;
    snprintf(mp, sizeof mp, "%s/model.safetensors", C->model_dir ? C->model_dir : ".");
    if (stat(mp, &sb) == 0) created = (double)sb.st_mtime;
    adm_store_hooks hooks = {.on_active = apply_head, .ctx = st};
    if (C->state_url && *C->state_url) {
        store_pg_opts po = {.url = C->state_url, .password_file = C->state_password_file, .instance = C->instance_name,
                            .fingerprint = st->fingerprint, .dim = st->mc->feature_dim,
                            .base_head = vit_model_head(st->model), .base_created = created, .recheck_s = 1,
                            .lease_s = C->job_lease_s, .hooks = hooks};
        if (store_pg_open(&po, &ad->store, err, errlen) != 0) return -1;
    } else {
        store_dir_opts so = {.state_dir = C->state_dir, .dim = st->mc->feature_dim, .fingerprint = st->fingerprint,
                             .base_head = vit_model_head(st->model),
                             .base_created = created, .hooks = hooks};
        if (store_dir_open(&so, &ad->store, err, errlen) != 0) return -1;
    }
    ad->store_open = 1;
    return 0;
}

/* Token (--admin-token-file, else VITD_ADMIN_TOKEN: o's, so the secret never enters the shared
 * srv_state), store (restoring --state-dir, activating the stored head), trainer (only when the
 * API is on), then the /admin/ route.  0, or -1 with err set. */
static int start_admin(srv_state *st, const opts *o, srv_http *http, admin_parts *ad, char *err, size_t errlen) {
    const srv_config *C = &st->cfg;
    char token[ADMIN_MAX_TOKEN + 1];   /* read here, copied by admin_http_start */
    int enabled = admin_token_read(C->admin_token_file, o->admin_token, token, err, errlen);
    if (enabled < 0) return -1;
    int ok = open_store(st, ad, err, errlen) == 0 &&
             (!enabled || trainer_start(&ad->store, st->batcher, &ad->trainer, err, errlen) == 0);
    if (ok) {
        admin_http_opts ao = {.st = st, .store = &ad->store, .trainer = ad->trainer, .token = enabled ? token : NULL};
        ok = (ad->http = admin_http_start(http, &ao, err, errlen)) != NULL;
    }
    explicit_bzero(token, sizeof token);   /* admin_http keeps its own copy */
    if (!ok) return -1;
    int pg = C->state_url && *C->state_url, persist = pg || (C->state_dir && *C->state_dir);
    srv_log(SRV_LOG_INFO, "admin: API %s%s%s (instance %s)", enabled ? "enabled" : "disabled (no token)",
            persist ? ", state in " : "", pg ? "PostgreSQL" : persist ? C->state_dir : "", C->instance_name);
    return 0;
}

/* After the HTTP server stopped: the running job is stopped (a shared store's is handed over,
 * if the drain has not already done so; the dir store's ends cancelled), then everything freed. */
static void stop_admin(admin_parts *ad) {
    trainer_stop(ad->trainer);
    admin_http_free(ad->http);
    if (ad->store_open) adm_store_close(&ad->store);
    memset(ad, 0, sizeof *ad);
}

/* ---- serving and the drain ------------------------------------------------------------------ */

/* Wait for SIGTERM/SIGINT, pinging the systemd watchdog at half its interval. */
static void wait_for_stop(srv_state *st, const sigset_t *sigs, uint64_t wd) {
    for (;;) {
        struct timespec to = {1, 0};
        if (wd && wd / 2 < 1000000) { to.tv_sec = 0; to.tv_nsec = (long)(wd / 2) * 1000; }
        int sig = sigtimedwait(sigs, NULL, &to);
        if (wd) sd_notify_send("WATCHDOG=1");
        if (sig <= 0 && g_stop_sig) sig = g_stop_sig;
        if (sig == SIGTERM || sig == SIGINT) {
            srv_log(SRV_LOG_INFO, "%s: draining (%ld requests in flight, timeout %ds)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                    atomic_load(&st->inflight), st->cfg.drain_timeout_s);
            return;
        }
    }
}

/* Stop accepting, hand the running training job over (a shared store: trainer_drain), wait up to
 * --drain-timeout-s for the requests in flight and the hand-over.  Returns how many requests are
 * left unanswered. */
static long drain(srv_state *st, srv_http *http, trainer *tr, uint64_t wd) {
    atomic_store(&st->draining, 1);
    sd_notify_send("STOPPING=1\nSTATUS=draining");
    srv_http_quiesce(http);
    trainer_drain(tr, st->cfg.drain_timeout_s);
    double deadline = vit_now() + st->cfg.drain_timeout_s, next_wd = vit_now();
    while ((atomic_load(&st->inflight) > 0 || trainer_busy(tr)) && vit_now() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (wd && vit_now() >= next_wd) {
            sd_notify_send("WATCHDOG=1");
            next_wd = vit_now() + (double)wd * 0.5e-6;
        }
    }
    return atomic_load(&st->inflight);
}

/* ---- main ----------------------------------------------------------------------------- */

/* Free what start-up made (in reverse order); the HTTP server first, so no handler runs on. */
static void teardown(srv_state *st, srv_http *http, admin_parts *ad) {
    srv_http_stop(http);
    stop_admin(ad);
    if (st->batcher) batcher_free(st->batcher);
    if (st->model) vit_model_free(st->model);
    st->batcher = NULL;
    st->model = NULL;
}

int main(int argc, char **argv) {
    opts o;
    if (configure(&o, argc, argv) != 0) return 2;
    srv_state st = {.cfg = o.cfg};
    const srv_config *C = &st.cfg;
    srv_log_set_level(C->log_level);
    memory_return_setup();
    srv_log_set_format(C->log_format);
    metrics_init();
    metrics_instance(C->instance_name);
    const vit_build_info *bi = vit_build();
    metrics_build_info(bi->version, bi->commit, bi->build_type, bi->cuda);
    sigset_t sigs;
    block_signals(&sigs);

    char err[512];
    int port = 0;
    srv_http *http = srv_http_start(&st, &port, err, sizeof err);
    if (!http) { srv_log(SRV_LOG_ERROR, "%s", err); return 1; }
    if (routes_register(http, &st) != 0 || v2_http_register(http, &st) != 0 || embed_register(http, &st) != 0 ||
        ui_register(http, !strcmp(o.ui, "on")) != 0) {
        srv_log(SRV_LOG_ERROR, "cannot register the routes");
        srv_http_stop(http);
        return 1;
    }
    srv_log(SRV_LOG_INFO, "listening on http://%s%s%s:%d (not ready: loading %s)", strchr(C->host, ':') ? "[" : "",
            C->host, strchr(C->host, ':') ? "]" : "", port, C->model_dir);
    double t0 = vit_now();
    admin_parts ad = {0};
    if (load_model(&st, err, sizeof err) != 0 || start_engine(&st, &o, err, sizeof err) != 0) {
        teardown(&st, http, &ad);
        return 1;
    }
    if (start_admin(&st, &o, http, &ad, err, sizeof err) != 0) {
        srv_log(SRV_LOG_ERROR, "admin API: %s", err);
        teardown(&st, http, &ad);
        return 1;
    }
    atomic_store(&st.ready, 1);
    srv_log(SRV_LOG_INFO, "ready: model %s (%s, %d classes, %dx%d) on %s/%s, max batch %d, %d worker(s), warm-up done in %.2fs",
            st.model_name, st.mc->architecture, st.mc->num_classes, st.mc->image_size, st.mc->image_size,
            batcher_device(st.batcher) == VIT_DEVICE_CUDA ? "cuda" : "cpu", vit_precision_str(batcher_precision(st.batcher)),
            C->max_batch, C->workers, vit_now() - t0);
    sd_notify_send("READY=1\nSTATUS=serving");

    uint64_t wd = sd_watchdog_usec();
    wait_for_stop(&st, &sigs, wd);
    long left = drain(&st, http, ad.trainer, wd);
    if (left > 0) {
        /* connections still suspended on the batcher cannot be torn down safely: leave now */
        srv_log(SRV_LOG_WARN, "drain timeout after %ds: %ld request(s) not answered; exiting", C->drain_timeout_s, left);
        fflush(stderr);
        _exit(0);
    }
    teardown(&st, http, &ad);
    srv_log(SRV_LOG_INFO, "drained; bye");
    return 0;
}
