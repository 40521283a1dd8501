/* version.c: the build's identity (vit_build, vit.h) from the header scripts/gen_version.sh
 * writes into the build directory at build time (version, commit, build type), plus whether the
 * CUDA backend is compiled in (VIT_HAVE_CUDA). */
#include <stdio.h>

#include "vit.h"
#include "vit_build.h"

static const vit_build_info g_build = {
    .version = VIT_BUILD_VERSION,
    .commit = VIT_BUILD_COMMIT,
    .build_type = VIT_BUILD_TYPE,
#ifdef VIT_HAVE_CUDA
    .cuda = 1,
#else
    .cuda = 0,
#endif
};

const vit_build_info *vit_build(void) { return &g_build; }

void vit_build_line(const char *prog, char *buf, size_t len) {
    if (!buf || !len) return;
    snprintf(buf, len, "%s %s (commit %s, %s build, CUDA %s)", prog, g_build.version, g_build.commit,
             g_build.build_type, g_build.cuda ? "compiled in" : "not compiled in");
}
