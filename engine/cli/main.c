/* main.c: `vit`, the engine's command-line tool: dispatch to subcommands. */
#include <cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "vit.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static int cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    char line[256];
    vit_build_line("vit", line, sizeof line);
    printf("%s\n", line);
    return 0;
}

/* one line per subcommand; keep alphabetical */
static const command commands[] = {
    {"bench", cmd_bench, "time the forward pass on random input: images/s"},
    {"calibrate", cmd_calibrate, "activation ranges for int8/fp8 from real images: DIR/calibration.json"},
    {"check", cmd_check, "compare a device's outputs with the CPU FP32 reference (exit 1 on a mismatch)"},
    {"classify", cmd_classify, "classify JPEG/PNG images: one JSON line per image"},
    {"eval", cmd_eval, "accuracy on an ImageFolder or IDX data set"},
    {"finetune", cmd_finetune, "train a new head on an ImageFolder, write a new model directory"},
    {"info", cmd_info, "describe a model directory (architecture, dims, labels, preprocessing, knobs)"},
    {"knobs", cmd_knobs, "list the engine's environment knobs: allowed values, default, value in effect"},
    {"preprocess", cmd_preprocess, "decode an image and write the model input tensor (.npy)"},
    {"run", cmd_run, "forward preprocessed tensors (.npy): logits, attention, rollout, features"},
    {"version", cmd_version, "print the version"},
};

int cli_parse_int(const char *name, const char *val, int min, int max) {
    char *end;
    long v = val ? strtol(val, &end, 10) : 0;
    if (!val || *val == 0 || *end != 0 || v < min || v > max) {
        fprintf(stderr, "vit: %s: expected an integer in [%d, %d], got '%s'\n", name, min, max,
                val ? val : "");
        return -1;
    }
    return (int)v;
}

int cli_print_json(const char *cmd, cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "vit: %s: out of memory\n", cmd);
        return 1;
    }
    puts(s);
    cJSON_free(s);
    return 0;
}

int cli_parse_device(const char *val, vit_device *out) {
    if (val && !strcmp(val, "auto")) *out = VIT_DEVICE_AUTO;
    else if (val && !strcmp(val, "cpu")) *out = VIT_DEVICE_CPU;
    else if (val && !strcmp(val, "cuda")) *out = VIT_DEVICE_CUDA;
    else {
        fprintf(stderr, "vit: --device: expected auto, cpu or cuda, got '%s'\n", val ? val : "");
        return -1;
    }
    return 0;
}

int cli_parse_precision(const char *val, vit_precision *out) {
    if (vit_precision_parse(val, out) != 0) {
        fprintf(stderr, "vit: --precision: expected auto, fp32, fp16, int8 or fp8, got '%s'\n",
                val ? val : "");
        return -1;
    }
    return 0;
}

int cli_engine_opt(const char *a, const char *v, cli_engine_opts *o) {
    if (!v) return 0;
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--threads")) { if ((o->threads = cli_parse_int(a, v, 0, 256)) < 0) return -1; }
    else if (!strcmp(a, "--image-size")) { if ((o->image_size = cli_parse_int(a, v, 1, 16384)) < 0) return -1; }
    else if (!strcmp(a, "--device")) { if (cli_parse_device(v, &o->device) < 0) return -1; }
    else if (!strcmp(a, "--precision")) { if (cli_parse_precision(v, &o->precision) < 0) return -1; }
    else return 0;
    return 1;
}

int cli_engine_arg(int argc, char **argv, int *i, cli_engine_opts *o, void (*usage)(FILE *)) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    int eng = cli_engine_opt(a, v, o);
    if (eng < 0) return 2;
    if (eng > 0) { ++*i; return CLI_ARG_NEXT; }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
    return CLI_ARG_OWN;
}

int cli_exit_status(vit_status st) {
    switch (st) {
    case VIT_OK: return 0;
    case VIT_E_ARG: return 2;
    case VIT_E_IO: return 3;
    case VIT_E_IMAGE_FORMAT: return 4;
    case VIT_E_IMAGE_TOO_LARGE: return 5;
    case VIT_E_IMAGE_CORRUPT: return 6;
    case VIT_E_CONFIG: case VIT_E_CHECKPOINT: return 7;
    case VIT_E_DEVICE: return 8;
    default: return 1;
    }
}

int cli_load_model(const char *cmd, const char *dir, const vit_load_opts *lo, vit_model **out) {
    char err[512] = "";
    vit_status st = vit_model_load(dir, lo, out, err, sizeof err);
    if (st) fprintf(stderr, "vit %s: %s: %s\n", cmd, vit_status_str(st), err);
    return cli_exit_status(st);
}

int cli_open_session(const char *cmd, const vit_model *m, const vit_session_opts *so,
                     vit_session **out) {
    char err[512] = "";
    vit_status st = vit_session_new(m, so, out, err, sizeof err);
    if (st) fprintf(stderr, "vit %s: %s: %s\n", cmd, vit_status_str(st), err);
    return cli_exit_status(st);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *cli_default_model(void) {
    static char buf[PATH_MAX + 64];
    static const char *const rel[] = {"/../models/fashion-vit", "/../share/vitd/models/fashion-vit"};
    if (is_dir("models/fashion-vit")) return "models/fashion-vit";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0';
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(buf, sizeof buf, "%s%s", exe, rel[i]);
            if (is_dir(buf)) return buf;
        }
    }
    return "models/fashion-vit";
}

static void usage(FILE *f) {
    fprintf(f, "usage: vit COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "vit: unknown command '%s'\n", argv[1]);
    const char *names[sizeof commands / sizeof commands[0]];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) names[i] = commands[i].name;
    const char *near = cli_closest(argv[1], names, (int)(sizeof commands / sizeof commands[0]));
    if (near) fprintf(stderr, "vit: did you mean '%s'?\n", near);
    usage(stderr);
    return 2;
}
