/* cpu_tune.c: vit_cpu_tune_env, which lets OpenBLAS use its AVX-512 kernels on CPUs it does not
 * recognise.  Debian 12's OpenBLAS 0.3.21 (DYNAMIC_ARCH) picks its kernel set once, when the
 * library is loaded, from the CPU model; it does not know AMD Zen 4/5 and falls back to the
 * AVX2 "Haswell" kernels, about half the GEMM speed of its "SkylakeX" AVX-512 kernels on such a
 * CPU.  The only supported switch is the OPENBLAS_CORETYPE environment variable, read at load
 * time, so the program re-executes itself once with it set. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cblas.h>

#include "vit.h"

static int has_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512cd");
#else
    return 0;
#endif
}

int vit_cpu_tune_env(char **argv) {
    if (!argv || !argv[0]) return 0;
    if (getenv("OPENBLAS_CORETYPE") || getenv("VIT_NO_CPU_TUNE")) return 0;
    const char *core = openblas_get_corename();
    if (!core || !has_avx512()) return 0;
    /* only when OpenBLAS settled for an AVX2-or-older kernel set */
    static const char *const avx2_or_less[] = {"Haswell", "Zen", "Sandybridge", "Nehalem",
                                               "Excavator", "Steamroller", "Piledriver", "Bulldozer",
                                               "Core2", "Penryn", "Prescott", "Barcelona"};
    int weak = 0;
    for (size_t i = 0; i < sizeof avx2_or_less / sizeof avx2_or_less[0]; i++)
        weak |= strcasecmp(core, avx2_or_less[i]) == 0;
    if (!weak) return 0;
    if (setenv("OPENBLAS_CORETYPE", "SKYLAKEX", 1) != 0) return 0;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on with the kernels we have */
    return 0;
}
