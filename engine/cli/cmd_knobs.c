/* cmd_knobs.c: `vit knobs [--json]`: the engine's environment knobs (engine/knobs.c's table):
 * name, type, allowed values, default, the value in effect here and one line of doc; as text or
 * as one JSON array (scripts/readme_knobs.py builds README's knob table from it).  A bad value in
 * the environment is reported and exits 1, as every model-loading subcommand does. */
#include <cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "vit.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vit knobs [--json]\n"
               "  --json            print one JSON array instead of text\n");
}

static int print_json(void) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < vit_knob_count(); i++) {
        vit_knob_info k;
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) || vit_knob_info_get(i, &k) != 0 ||
            !cJSON_AddStringToObject(o, "name", k.name) || !cJSON_AddStringToObject(o, "type", k.type) ||
            !cJSON_AddStringToObject(o, "allowed", k.allowed) ||
            !cJSON_AddStringToObject(o, "default", k.default_value) ||
            !cJSON_AddStringToObject(o, "value", k.value) || !cJSON_AddBoolToObject(o, "from_env", k.from_env) ||
            !cJSON_AddStringToObject(o, "doc", k.doc)) {
            cJSON_Delete(arr);
            arr = NULL;
        }
    }
    return cli_print_json("knobs", arr);
}

int cmd_knobs(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "vit: knobs: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char err[512] = "";
    vit_status st = vit_knobs_load(err, sizeof err);
    if (st != VIT_OK) {
        fprintf(stderr, "vit: knobs: %s: %s\n", vit_status_str(st), err);
        return 1;
    }
    if (json) return print_json();
    for (int i = 0; i < vit_knob_count(); i++) {
        vit_knob_info k;
        if (vit_knob_info_get(i, &k) != 0) continue;
        printf("%-20s %-9s%s  (%s %s, default %s)\n    %s\n", k.name, k.value, k.from_env ? " (env)" : "      ",
               k.type, k.allowed, k.default_value, k.doc);
    }
    return 0;
}
