/* main.c: `vit`, the engine's command-line tool: dispatch to subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifndef VIT_VERSION
#define VIT_VERSION "0.1.0"
#endif

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static int cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    printf("vit %s\n", VIT_VERSION);
    return 0;
}

/* one line per subcommand; keep alphabetical */
static const command commands[] = {
    {"eval", cmd_eval, "accuracy on an ImageFolder or IDX data set"},
    {"info", cmd_info, "describe a model directory (architecture, dims, labels, preprocessing)"},
    {"preprocess", cmd_preprocess, "decode an image and write the model input tensor (.npy)"},
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
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "vit: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
