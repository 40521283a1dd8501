/* main.c: vitd, the image-classification daemon.  Flags (each also VITD_<NAME> in the
 * environment; flags win), start-up (listen, load the model, sessions, warm-up, then ready),
 * systemd notify, and the graceful drain on SIGTERM/SIGINT. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "sdnotify.h"
#include "server.h"
#include "util.h"
#include "v2_http.h"

srv_state g_srv;

static const char *const log_names[] = {"error", "warn", "info", "debug"};

/* now as ISO 8601 UTC with milliseconds */
static void log_time(char *buf, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

void srv_log(int level, const char *fmt, ...) {
    if (level > g_srv.cfg.log_level) return;
    char msg[1024], t[96], line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_time(t, sizeof t);
    logfmt_line(line, sizeof line, g_srv.cfg.log_format, t, log_names[level & 3], msg, NULL);
    fprintf(stderr, "%s\n", line);
}

void srv_log_access(const logfmt_access *a) {
    if (g_srv.cfg.log_level < SRV_LOG_INFO) return;
    char t[96], line[2048];
    log_time(t, sizeof t);
    if (g_srv.cfg.log_format == LOGFMT_JSON) {
        logfmt_line(line, sizeof line, LOGFMT_JSON, t, "info", "access", a);
    } else {
        char msg[1024];
        snprintf(msg, sizeof msg, "access %s %s %s %d images=%d %.1fms id=%s%s%s%s%s", a->client, a->method, a->path, a->status,
                 a->images, a->duration_ms, a->request_id, a->trace_id ? " trace=" : "", a->trace_id ? a->trace_id : "",
                 a->note ? " " : "", a->note ? a->note : "");
        logfmt_line(line, sizeof line, LOGFMT_TEXT, t, "info", msg, NULL);
    }
    fprintf(stderr, "%s\n", line);
}

/* SIGTERM/SIGINT that reach a thread started before main (OpenBLAS's pool, created by a
 * library constructor, does not block them) run this instead of the default action (death);
 * the main loop picks the signal up. */
static volatile sig_atomic_t g_stop_sig;
static void on_stop_signal(int sig) { g_stop_sig = sig; }

int server_set_active_head(vit_head *h) {
    if (!h || !g_srv.batcher || vit_head_dim(h) != g_srv.mc->feature_dim) return -1;
    batcher_set_head(g_srv.batcher, h);
    return 0;
}

vit_head *server_get_active_head(void) { return batcher_get_head(g_srv.batcher); }

static void route_v2(srv_conn *c) { v2_handle(c, &g_srv); }

/* A start-up step failed (already logged): stop listening, free what was made, exit status 1. */
static int start_failed(void) {
    srv_http_stop();
    if (g_srv.batcher) batcher_free(g_srv.batcher);
    if (g_srv.model) vit_model_free(g_srv.model);
    g_srv.batcher = NULL;
    g_srv.model = NULL;
    return 1;
}

/* ---- flags ---------------------------------------------------------------------------- */

typedef enum { F_STR, F_INT, F_LONG, F_MB, F_U64, F_DEVICE, F_PREC, F_LOG, F_INPUT, F_LOGFMT } ftype;
typedef struct { const char *name; ftype t; void *p; long lo, hi; const char *help; } flag;

static char *opt_admin_token_file = "", *opt_state_dir = "", *opt_cors_origin = "";
static char *opt_model, *opt_host, *opt_device = "auto", *opt_precision = "auto", *opt_log = "info", *opt_log_format = "text";
static char *opt_input = "auto";
static long opt_max_body_mb = 20;
static srv_config *C = &g_srv.cfg;

static flag flags[] = {
    {"model", F_STR, &opt_model, 0, 0, "model directory (config.json + model.safetensors)"},
    {"host", F_STR, &opt_host, 0, 0, "address to listen on (IPv4 or IPv6)"},
    {"port", F_INT, &g_srv.cfg.port, 0, 65535, "TCP port (0: any free port, logged)"},
    {"max-batch", F_INT, &g_srv.cfg.max_batch, 1, 1024, "largest batch one forward runs"},
    {"max-delay-us", F_LONG, &g_srv.cfg.max_delay_us, 0, 10000000, "longest wait for a batch to fill, from its first image"},
    {"eager-dispatch", F_INT, &g_srv.cfg.eager_dispatch, 0, 1, "1: an idle worker runs a partial batch when no more images are on the way (0: wait)"},
    {"max-queue", F_INT, &g_srv.cfg.max_queue, 1, 1000000, "images admitted and not yet running; beyond: 503"},
    {"workers", F_INT, &g_srv.cfg.workers, 1, 64, "engine sessions; each runs whole batches from the shared queue"},
    {"threads", F_INT, &g_srv.cfg.threads, 0, 256, "engine threads per session (0: all cores)"},
    {"decoders", F_INT, &g_srv.cfg.decoders, 0, 256, "image decode threads (0: number of cores)"},
    {"decode-nice", F_INT, &g_srv.cfg.decode_nice, 0, 19, "nice level of decode threads (> 0: the engine gets the cores first)"},
    {"fast-decode", F_INT, &g_srv.cfg.fast_decode, 0, 1, "1: big JPEGs decode at 1/2..1/8 scale in the DCT domain (faster, not PIL-exact)"},
    {"http-threads", F_INT, &g_srv.cfg.http_threads, 1, 256, "HTTP threads (libmicrohttpd pool)"},
    {"max-body-mb", F_LONG, &opt_max_body_mb, 1, 4096, "largest request body in MiB; beyond: 413"},
    {"max-pixels", F_U64, &g_srv.cfg.max_pixels, 1, 0, "largest image (width*height); beyond: 413"},
    {"max-images", F_INT, &g_srv.cfg.max_images, 1, 64, "images per request"},
    {"max-top-k", F_INT, &g_srv.cfg.max_top_k, 1, SRV_TOPK_MAX, "largest top_k a request may ask"},
    {"max-connections", F_INT, &g_srv.cfg.max_connections, 1, 1000000, "open connections; beyond are refused"},
    {"request-timeout-s", F_INT, &g_srv.cfg.request_timeout_s, 1, 86400, "idle or slow client timeout"},
    {"drain-timeout-s", F_INT, &g_srv.cfg.drain_timeout_s, 0, 86400, "on SIGTERM, longest wait for accepted requests"},
    {"device", F_DEVICE, &opt_device, 0, 0, "auto|cpu|cuda"},
    {"precision", F_PREC, &opt_precision, 0, 0, "auto|fp32|fp16|int8 (auto: fp16 on cuda, fp32 on cpu; int8: cpu only)"},
    {"input", F_INPUT, &opt_input, 0, 0, "auto|fp32|fp16: pixel type of the batch buffers (auto: what the engine reads fastest, fp16 on cuda; same results either way)"},
    {"device-check", F_INT, &g_srv.cfg.device_check, 0, 1, "1: on cuda, check 2 images against the CPU before serving (mismatch: auto uses the CPU, cuda exits)"},
    {"log-level", F_LOG, &opt_log, 0, 0, "error|warn|info|debug (info logs every request)"},
    {"log-format", F_LOGFMT, &opt_log_format, 0, 0, "text|json: json writes one object a line (time, level, msg; requests: request_id, method, path, status, duration_ms, images, client, trace_id)"},
    {"cors-origin", F_STR, &opt_cors_origin, 0, 0, "browser origins allowed to call the API: * or a comma-separated list (none: no CORS headers)"},
    {"admin-token-file", F_STR, &opt_admin_token_file, 0, 0, "file holding the admin API bearer token (else VITD_ADMIN_TOKEN; none: admin API off)"},
    {"state-dir", F_STR, &opt_state_dir, 0, 0, "directory where the admin API keeps head versions"},
};
#define NFLAGS (int)(sizeof flags / sizeof flags[0])

static void flag_default_str(const flag *f, char *buf, size_t n) {
    switch (f->t) {
    case F_STR: case F_DEVICE: case F_PREC: case F_LOG: case F_INPUT: case F_LOGFMT: snprintf(buf, n, "%s", *(char **)f->p ? *(char **)f->p : ""); break;
    case F_INT: snprintf(buf, n, "%d", *(int *)f->p); break;
    case F_LONG: case F_MB: snprintf(buf, n, "%ld", *(long *)f->p); break;
    case F_U64: snprintf(buf, n, "%llu", (unsigned long long)*(uint64_t *)f->p); break;
    }
}

static void usage(FILE *o) {
    fprintf(o, "usage: vitd [flags]\n"
               "Serve a Vision Transformer image classifier over HTTP: POST /classify, GET /healthz,\n"
               "/readyz, /v1/models, /metrics.  Every flag can also be set as VITD_<NAME> in the\n"
               "environment (e.g. VITD_MAX_BATCH=16); flags win over the environment.\n\nflags:\n");
    for (int i = 0; i < NFLAGS; i++) {
        char def[128], env[64], arg[40];
        flag_default_str(&flags[i], def, sizeof def);
        snprintf(env, sizeof env, "VITD_");
        for (const char *s = flags[i].name; *s; s++) {
            size_t l = strlen(env);
            env[l] = *s == '-' ? '_' : (char)(*s >= 'a' && *s <= 'z' ? *s - 32 : *s);
            env[l + 1] = '\0';
        }
        snprintf(arg, sizeof arg, "--%s", flags[i].name);
        fprintf(o, "  %-20s %s\n  %-20s (default: %s; env %s)\n", arg, flags[i].help, "", def[0] ? def : "-", env);
    }
    fprintf(o, "  %-20s this help; the version (commit, build type, CUDA compiled in or not)\n", "--help, --version");
}

static int set_flag(const flag *f, const char *v, const char *src) {
    char *end;
    errno = 0;
    switch (f->t) {
    case F_STR: *(const char **)f->p = v; return 0;
    case F_DEVICE:
        if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "cuda")) break;
        *(const char **)f->p = v; return 0;
    case F_PREC:
        { vit_precision p; if (vit_precision_parse(v, &p) != 0) break; }
        *(const char **)f->p = v; return 0;
    case F_INPUT:
        if (strcmp(v, "auto") && strcmp(v, "fp32") && strcmp(v, "fp16")) break;
        *(const char **)f->p = v; return 0;
    case F_LOGFMT:
        if (strcmp(v, "text") && strcmp(v, "json")) break;
        *(const char **)f->p = v; return 0;
    case F_LOG:
        if (strcmp(v, "error") && strcmp(v, "warn") && strcmp(v, "info") && strcmp(v, "debug")) break;
        *(const char **)f->p = v; return 0;
    case F_INT: case F_LONG: case F_MB: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < f->lo || x > f->hi) break;
        if (f->t == F_INT) *(int *)f->p = (int)x; else *(long *)f->p = x;
        return 0;
    }
    case F_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno || x < (unsigned long long)f->lo || *v == '-') break;
        *(uint64_t *)f->p = (uint64_t)x;
        return 0;
    }
    }
    if (f->t == F_INT || f->t == F_LONG || f->t == F_MB)
        fprintf(stderr, "vitd: %s --%s: invalid value '%s' (an integer in [%ld, %ld])\n", src, f->name, v, f->lo, f->hi);
    else
        fprintf(stderr, "vitd: %s --%s: invalid value '%s'\n", src, f->name, v);
    return -1;
}

static int parse_flags(int argc, char **argv) {
    for (int i = 0; i < NFLAGS; i++) {
        char env[64] = "VITD_";
        for (const char *s = flags[i].name; *s; s++) {
            size_t l = strlen(env);
            env[l] = *s == '-' ? '_' : (char)(*s >= 'a' && *s <= 'z' ? *s - 32 : *s);
            env[l + 1] = '\0';
        }
        const char *v = getenv(env);
        if (v && set_flag(&flags[i], v, env) != 0) return -1;
    }
    for (int a = 1; a < argc; a++) {
        const char *s = argv[a];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { usage(stdout); exit(0); }
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
        const char *v = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!v) { fprintf(stderr, "vitd: --%s needs a value\n", flags[i].name); return -1; }
        if (set_flag(&flags[i], v, "flag") != 0) return -1;
    }
    return 0;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* models/fashion-vit relative to the CWD, else to the executable's ../models */
static char *default_model(void) {
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

/* ---- main ----------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) ncpu = 1;
    *C = (srv_config){.host = "127.0.0.1", .port = 8080, .max_batch = 32, .max_delay_us = 2000, .eager_dispatch = 1, .device_check = 1, .max_queue = 256,
                      .workers = 1, .threads = 0, .decoders = 0, .http_threads = 2, .max_pixels = VIT_DEFAULT_MAX_PIXELS,
                      .drain_timeout_s = 30, .log_level = SRV_LOG_INFO, .max_connections = 1024,
                      .request_timeout_s = 30, .max_images = 64, .max_top_k = SRV_TOPK_MAX};
    opt_host = (char *)C->host;
    opt_model = default_model();
    if (parse_flags(argc, argv) != 0) return 2;
    C->model_dir = opt_model;
    C->admin_token_file = opt_admin_token_file;
    C->state_dir = opt_state_dir;
    C->cors_origin = opt_cors_origin;
    C->host = opt_host;
    C->max_body = (size_t)opt_max_body_mb << 20;
    C->log_format = !strcmp(opt_log_format, "json") ? LOGFMT_JSON : LOGFMT_TEXT;
    C->log_level = !strcmp(opt_log, "error") ? 0 : !strcmp(opt_log, "warn") ? 1 : !strcmp(opt_log, "debug") ? 3 : 2;
    C->device = !strcmp(opt_device, "cpu") ? VIT_DEVICE_CPU : !strcmp(opt_device, "cuda") ? VIT_DEVICE_CUDA : VIT_DEVICE_AUTO;
    /* auto: the engine picks FP16 on CUDA and FP32 on the CPU */
    if (vit_precision_parse(opt_precision, &C->precision) != 0) C->precision = VIT_PREC_AUTO;
    if (C->decoders == 0) C->decoders = (int)ncpu;
    metrics_init();

    /* signals: handled synchronously by the main thread; every other thread blocks them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    if (srv_route_prefix("/v2", route_v2) != 0) { srv_log(SRV_LOG_ERROR, "cannot register the /v2 routes"); return 1; }
    int port = srv_http_start(err, sizeof err);
    if (port < 0) { srv_log(SRV_LOG_ERROR, "%s", err); return 1; }
    srv_log(SRV_LOG_INFO, "listening on http://%s%s%s:%d (not ready: loading %s)", strchr(C->host, ':') ? "[" : "",
            C->host, strchr(C->host, ':') ? "]" : "", port, C->model_dir);

    double t0 = vit_now();
    vit_status st = vit_model_load(C->model_dir, NULL, &g_srv.model, err, sizeof err);
    if (st != VIT_OK) {
        srv_log(SRV_LOG_ERROR, "cannot load model %s: %s", C->model_dir, err);
        return start_failed();
    }
    g_srv.mc = vit_model_config(g_srv.model);
    {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", C->model_dir);
        size_t n = strlen(tmp);
        while (n > 1 && tmp[n - 1] == '/') tmp[--n] = '\0';
        const char *base = strrchr(tmp, '/');
        base = base ? base + 1 : tmp;
        size_t bl = strnlen(base, sizeof g_srv.model_name - 1);
        memcpy(g_srv.model_name, base, bl);
        g_srv.model_name[bl] = '\0';
    }
    batcher_opts bo = {.max_batch = C->max_batch, .max_queue = C->max_queue, .workers = C->workers,
                       .threads = C->threads, .decoders = C->decoders, .max_delay_us = C->max_delay_us, .eager_dispatch = C->eager_dispatch,
                       .max_pixels = C->max_pixels, .decoder_nice = C->decode_nice, .fast_decode = C->fast_decode, .device = C->device, .precision = C->precision,
                       .input_f16 = !strcmp(opt_input, "fp16") ? 1 : !strcmp(opt_input, "fp32") ? -1 : 0};
    st = batcher_new(g_srv.model, &bo, &g_srv.batcher, err, sizeof err);
    if (st != VIT_OK) {
        srv_log(SRV_LOG_ERROR, "cannot start the engine: %s", err);
        return start_failed();
    }
    vit_device dev = batcher_device(g_srv.batcher);
    vit_precision prec = batcher_precision(g_srv.batcher);
    if (dev == VIT_DEVICE_CUDA && C->device_check) {
        /* the accelerated path must agree with the CPU reference before it serves anyone */
        vit_session_opts o = {.max_batch = 2, .threads = C->threads, .device = dev, .precision = prec};
        vit_check_result r;
        st = vit_device_check(g_srv.model, &o, SRV_DEVICE_CHECK_TOL, &r, err, sizeof err);
        if (st == VIT_OK) {
            srv_log(SRV_LOG_INFO, "device check: cuda/%s agrees with the CPU (relative error: features %.2g, logits %.2g, attention %.2g)",
                    vit_precision_str(prec), r.features_err, r.logits_err, r.attn_err);
        } else if (C->device != VIT_DEVICE_AUTO) {
            srv_log(SRV_LOG_ERROR, "%s (--device cuda: not serving; --device-check 0 skips the check)", err);
            return start_failed();
        } else {
            srv_log(SRV_LOG_ERROR, "%s; device auto: serving on the CPU instead", err);
            batcher_free(g_srv.batcher);
            g_srv.batcher = NULL;
            bo.device = VIT_DEVICE_CPU;
            bo.precision = VIT_PREC_AUTO;
            st = batcher_new(g_srv.model, &bo, &g_srv.batcher, err, sizeof err);
            if (st != VIT_OK) {
                srv_log(SRV_LOG_ERROR, "cannot start the engine on the CPU: %s", err);
                return start_failed();
            }
            dev = batcher_device(g_srv.batcher);
            prec = batcher_precision(g_srv.batcher);
        }
    }
    const char *dev_s = dev == VIT_DEVICE_CUDA ? "cuda" : "cpu", *prec_s = vit_precision_str(prec);
    if (C->device == VIT_DEVICE_AUTO && dev == VIT_DEVICE_CPU) srv_log(SRV_LOG_INFO, "device auto: no CUDA device, using the CPU");
    metrics_model_info(g_srv.model_name, g_srv.mc->architecture, dev_s, prec_s, g_srv.mc->image_size,
                       g_srv.mc->num_classes, C->max_batch);
    const vit_build_info *bi = vit_build();
    metrics_build_info(bi->version, bi->commit, bi->build_type, bi->cuda);
    if (admin_init && admin_init(err, sizeof err) != 0) {
        srv_log(SRV_LOG_ERROR, "admin API: %s", err);
        return start_failed();
    }
    atomic_store(&g_srv.ready, 1);
    srv_log(SRV_LOG_INFO, "ready: model %s (%s, %d classes, %dx%d) on %s/%s, max batch %d, %d worker(s), warm-up done in %.2fs",
            g_srv.model_name, g_srv.mc->architecture, g_srv.mc->num_classes, g_srv.mc->image_size, g_srv.mc->image_size,
            dev_s, prec_s, C->max_batch, C->workers, vit_now() - t0);
    sd_notify_send("READY=1\nSTATUS=serving");

    /* wait for a signal, pinging the systemd watchdog at half its interval */
    uint64_t wd = sd_watchdog_usec();
    for (;;) {
        struct timespec to = {1, 0};
        if (wd && wd / 2 < 1000000) { to.tv_sec = 0; to.tv_nsec = (long)(wd / 2) * 1000; }
        int sig = sigtimedwait(&sigs, NULL, &to);
        if (wd) sd_notify_send("WATCHDOG=1");
        if (sig <= 0 && g_stop_sig) sig = g_stop_sig;
        if (sig == SIGTERM || sig == SIGINT) {
            srv_log(SRV_LOG_INFO, "%s: draining (%ld requests in flight, timeout %ds)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                    atomic_load(&g_srv.inflight), C->drain_timeout_s);
            break;
        }
    }
    atomic_store(&g_srv.draining, 1);
    sd_notify_send("STOPPING=1\nSTATUS=draining");
    srv_http_quiesce();
    double deadline = vit_now() + C->drain_timeout_s, next_wd = vit_now();
    while (atomic_load(&g_srv.inflight) > 0 && vit_now() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (wd && vit_now() >= next_wd) {
            sd_notify_send("WATCHDOG=1");
            next_wd = vit_now() + (double)wd * 0.5e-6;
        }
    }
    long left = atomic_load(&g_srv.inflight);
    if (left > 0) {
        /* connections still suspended on the batcher cannot be torn down safely: leave now */
        srv_log(SRV_LOG_WARN, "drain timeout after %ds: %ld request(s) not answered; exiting", C->drain_timeout_s, left);
        fflush(stderr);
        _exit(0);
    }
    srv_http_stop();
    if (admin_shutdown) admin_shutdown();
    batcher_free(g_srv.batcher);
    vit_model_free(g_srv.model);
    srv_log(SRV_LOG_INFO, "drained; bye");
    return 0;
}
