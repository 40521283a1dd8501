/* race_self.cpp: the race check's own tests (tests/emu/README.md, "Race check"), linked into
 * test_emu_race only, next to the kernel checks of tests/gpu/test_kernels.cu, which calls
 * emu_race_self_test first.  Races that no output can show must kill the run with
 * "shared-memory race"; the same kernels with their barrier must run clean.  Written as CUDA,
 * turned into host C++ by gen_host.py and compiled with the race instrumentation. */
#include <string>

#include "gpu_harness.h"
#include "emu_child.h"

static __global__ void k_race_war(int *out, int sync) {   /* write-after-read of the same value */
    __shared__ int v[1];
    if (threadIdx.x == 0) v[0] = 5;
    __syncthreads();
    const int x = v[0];
    if (sync) __syncthreads();
    if (threadIdx.x == 40) v[0] = 5;
    out[threadIdx.x] = x;
}
static __global__ void k_race_warp(int *out, int sync) {  /* a shuffle does not order smem */
    __shared__ int v[32];
    v[threadIdx.x] = (int)threadIdx.x;
    int y = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
    if (sync) __syncwarp();
    out[threadIdx.x] = v[(threadIdx.x + 1) % 32] + y - y;
}
static __global__ void k_race_rmw(int *out, int sync) {   /* all lanes read, then one updates */
    __shared__ int v[1];
    if (threadIdx.x == 0) v[0] = 1;
    __syncwarp();
    const int a = v[0];
    if (sync) __syncwarp();
    if (threadIdx.x == 3) { const int b = v[0]; v[0] = a + b; }
    out[threadIdx.x] = a;
}
static void run_war(int sync) { int *d = gh_dev<int>(64); k_race_war<<<1, 64>>>(d, sync); }
static void run_warp(int sync) { int *d = gh_dev<int>(32); k_race_warp<<<1, 32>>>(d, sync); }
static void run_rmw(int sync) { int *d = gh_dev<int>(32); k_race_rmw<<<1, 32>>>(d, sync); }

/* report: the caller's PASS/FAIL counter (gpu_harness.h's gh_result in test_kernels.cu) */
void emu_race_self_test(void (*report)(int ok, const char *fmt, ...)) {
    struct { const char *name; void (*fn)(int); } cases[] = {
        {"write-after-read across warps, same value", run_war},
        {"write then read by another lane, only a shuffle between", run_warp},
        {"lanes read, one lane then reads and writes (ordered by the second __syncwarp)", run_rmw},
    };
    for (auto &c : cases) {
        std::string o1, o2;
        const int s1 = emu_run_child([&] { c.fn(0); }, o1), s2 = emu_run_child([&] { c.fn(1); }, o2);
        const bool died = s1 != -1 && !(WIFEXITED(s1) && WEXITSTATUS(s1) == 0);
        const bool clean = s2 != -1 && WIFEXITED(s2) && WEXITSTATUS(s2) == 0;
        const size_t at = o1.find("shared-memory race");
        report(died && at != std::string::npos && clean && o2.empty(),
               "race check: %s: dies without the barrier (%s), runs with it (%s)", c.name,
               at != std::string::npos ? o1.substr(at, o1.find(':', at + 20) - at).c_str() : "no report",
               clean ? "exit 0" : "failed");
    }
}
