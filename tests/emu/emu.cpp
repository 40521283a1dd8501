/* emu.cpp: the CPU SIMT emulator's engine (tests/emu/README.md): fibers, the block scheduler,
 * barriers and warp collectives, shared memory, the matrix ops and the runtime API subset.
 *
 * Execution model.  A launch runs its blocks one after another, in a seeded random order.  A
 * block's threads are fibers (own stacks, a hand-written context switch on x86-64, ucontext
 * elsewhere) in this one OS thread; the scheduler picks a ready fiber, which runs until its next
 * sync point (__syncthreads, a warp collective) or its end.  Each block draws one of two
 * policies: uniform (any ready thread, at random) or warp priority (a random order of the
 * warps; the first warp with a ready lane runs, a random lane of it, so one warp runs ahead to
 * its next barrier while the others have not started, as on a busy SM).  So code that relies
 * on an order between threads without a barrier sees a random one, and the comparison with the
 * float64 reference catches it.  Rules enforced, each a loud failure (message with kernel, block,
 * thread, warp, lane, source line; then abort):
 *   __syncthreads   all live threads of the block; exited threads count as arrived; all at the
 *                   same call site (divergent barriers are undefined behaviour)
 *   shuffles, ballot/any/all, wmma::mma_sync, mma.sync.m16n8k16: every lane named in the mask
 *                   must call the same collective with the same mask (width, operand size); a
 *                   named lane that has exited, or a source lane outside the mask, is an error
 *   __syncwarp      the lanes named in mask; exited lanes count as arrived (as CUDA says)
 *   wmma load/store/fill: no sync points, but every lane of the warp must issue the same
 *                   sequence of them with the same pointer, ldm and layout
 *   deadlock        no ready fiber while some are live: every waiter's site is printed
 * Shared memory: the dynamic buffer (exactly the launch's size) and each __shared__ variable
 * (exactly its size, gen_host.py rewrote the declaration) are separate heap blocks, freed at
 * block end, so ASan reports out-of-bounds and use-after-block accesses.  They start filled
 * with a byte drawn per block: 0xff (NaN as float and half), 0x7f (float +3.4e38, half NaN) or
 * 0xfe (float -1.7e38, half NaN), so a read before the write shows up in sums (NaN, huge) and
 * also in max/min reductions, which ignore NaN (fmaxf) but not a huge value. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(EMU_RACE)
#include <dlfcn.h>
#endif
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "mma.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#define EMU_NO_ASAN __attribute__((no_sanitize_address))
#else
#define EMU_ASAN 0
#define EMU_NO_ASAN
#endif

#if defined(__x86_64__) && !defined(EMU_UCONTEXT) /* else ucontext (slower: a syscall per switch) */
#define EMU_ASM_SWITCH 1
#else
#define EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

uint3 emu::g_threadIdx, emu::g_blockIdx;
dim3 emu::g_blockDim, emu::g_gridDim;

namespace emu {
namespace {

enum FiberState { F_READY, F_RUNNING, F_WAIT_BAR, F_WAIT_WARP, F_DONE };

struct Fiber {
#if EMU_ASM_SWITCH
    void *sp;
#else
    ucontext_t uc;
#endif
    char *stack;
    size_t stack_size;
    uint3 tid;
    int linear, warp, lane;
    int state;
    const char *file;      /* where it waits */
    int line;
    const char *what;
    uint64_t val, res;     /* warp_exchange deposit / result */
    int arg;
    void *p[4];            /* warp_collective deposit */
    uint64_t op_seq;       /* wmma ops issued */
    void *asan_fake;
};

struct Pending {
    bool active;
    int kind;
    const char *name;
    unsigned mask, arrived;
    int width, size;
    const char *file;
    int line;
    collective_fn fn;
};

struct OpRec {
    const char *what;
    const void *ptr;
    unsigned ldm;
    int layout;
    const char *file;
    int line;
    int count;
};

struct Warp {
    unsigned members, exited;
    uint32_t sync_epoch;                         /* completed __syncwarp (race check) */
    Pending pc;
    std::deque<OpRec> log;
    uint64_t log_base;
};

struct Shadow;
struct SmemVar {
    const void *tag;
    void *p;
    size_t size;
    const char *name;
    Shadow *shadow;                              /* race check: one record per byte, or NULL */
};

struct Block {
    const char *kname;
    int nthreads, live;
    std::vector<Fiber> fibers;
    std::vector<std::vector<Fiber *>> ready;   /* per warp */
    size_t nready;
    bool by_priority;                            /* scheduling mode of this block */
    std::vector<int> prio_order;                 /* warps, highest priority first */
    std::vector<Warp> warps;
    int bar_count;
    const char *bar_file;
    int bar_line;
    void *dyn;
    size_t dyn_size;
    Shadow *dyn_shadow;
    std::vector<SmemVar> statics;
    size_t static_bytes;
    int poison;                                  /* fill byte of this block's shared memory */
    uint32_t bar_epoch;                          /* completed __syncthreads (race check) */
    body_fn body;
    void *ctx;
};

Block *g_blk;
Fiber *g_cur;
uint64_t g_rng = 0x9e3779b97f4a7c15ull, g_seed;
bool g_seeded;
cudaError_t g_last = cudaSuccess;
std::map<const void *, int> g_max_dyn;   /* cudaFuncAttributeMaxDynamicSharedMemorySize */
std::vector<char *> g_stacks;
constexpr size_t kStack = 128 * 1024, kGuard = 4096;
#if EMU_ASM_SWITCH
void *g_sched_sp;
#else
ucontext_t g_sched_uc;
#endif
#if EMU_ASAN
const void *g_main_bottom;  /* the scheduler's stack, for ASan's fiber switches */
size_t g_main_size;
#endif

uint64_t rng(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

const char *kind_name(int k) {
    switch (k) {
    case OP_SHFL_IDX: return "__shfl_sync";
    case OP_SHFL_UP: return "__shfl_up_sync";
    case OP_SHFL_DOWN: return "__shfl_down_sync";
    case OP_SHFL_XOR: return "__shfl_xor_sync";
    case OP_BALLOT: return "__ballot_sync";
    case OP_ANY: return "__any_sync";
    case OP_ALL: return "__all_sync";
    case OP_SYNCWARP: return "__syncwarp";
    case OP_WMMA_MMA: return "wmma::mma_sync";
    case OP_MMA16816: return "mma.sync.m16n8k16";
    case OP_LDMATRIX: return "ldmatrix.x4";
    case OP_LDMATRIX_T: return "ldmatrix.x4.trans";
    }
    return "?";
}

}  // namespace

void set_seed(uint64_t s) {
    g_seed = s;
    g_rng = s ^ 0x5851f42d4c957f2dull;
    g_seeded = true;
}
uint64_t seed(void) { return g_seed; }

void fail(const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "emu: FATAL");
    if (g_blk) {
        fprintf(stderr, " in kernel %s block (%u,%u,%u)", g_blk->kname, g_blockIdx.x, g_blockIdx.y,
                g_blockIdx.z);
        if (g_cur)
            fprintf(stderr, " thread (%u,%u,%u) warp %d lane %d", g_cur->tid.x, g_cur->tid.y,
                    g_cur->tid.z, g_cur->warp, g_cur->lane);
    }
    fprintf(stderr, ": ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    abort();
}

/* ---- context switching ------------------------------------------------------------------ */
#if EMU_ASM_SWITCH
extern "C" void emu_ctx_switch(void **save_sp, void *new_sp);
/* saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores
 * the stack pointer in *save_sp, and resumes the context saved at new_sp the same way */
asm(R"(
    .text
    .globl emu_ctx_switch
    .type emu_ctx_switch, @function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
)");
#endif

namespace {

extern "C" [[noreturn]] void emu_fiber_entry(void);

/* scheduler -> fiber */
void switch_to(Fiber *f) {
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f->stack, f->stack_size);
#endif
#if EMU_ASM_SWITCH
    emu_ctx_switch(&g_sched_sp, f->sp);
#else
    swapcontext(&g_sched_uc, &f->uc);
#endif
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

/* fiber -> scheduler; returns when the scheduler picks this fiber again */
void yield_fiber(Fiber *f) {
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&f->asan_fake, g_main_bottom, g_main_size);
#endif
#if EMU_ASM_SWITCH
    emu_ctx_switch(&f->sp, g_sched_sp);
#else
    swapcontext(&f->uc, &g_sched_uc);
#endif
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(f->asan_fake, &g_main_bottom, &g_main_size);
#endif
}

void make_ready(Fiber *f) {
    f->state = F_READY;
    g_blk->ready[f->warp].push_back(f);
    g_blk->nready++;
}

void release_barrier(void) {
    Block &b = *g_blk;
    for (Fiber &f : b.fibers)
        if (f.state == F_WAIT_BAR) make_ready(&f);
    b.bar_count = 0;
    b.bar_epoch++;
}

std::string lanes_str(unsigned m) {
    char buf[16];
    snprintf(buf, sizeof buf, "0x%08x", m);
    return buf;
}

void complete_exchange(Warp &w) {
    Block &b = *g_blk;
    Fiber *lanes[32] = {nullptr};
    for (Fiber &f : b.fibers)
        if (f.warp == (int)(&w - b.warps.data())) lanes[f.lane] = &f;
    const Pending &pc = w.pc;
    const uint64_t vmask = pc.size >= 8 ? ~0ull : ((1ull << (8 * pc.size)) - 1);
    if (pc.kind == OP_BALLOT || pc.kind == OP_ANY || pc.kind == OP_ALL) {
        unsigned bal = 0;
        for (int l = 0; l < 32; l++)
            if ((pc.mask >> l & 1) && lanes[l]->val) bal |= 1u << l;
        uint64_t r = pc.kind == OP_BALLOT ? bal : pc.kind == OP_ANY ? (bal != 0) : (bal == pc.mask);
        for (int l = 0; l < 32; l++)
            if (pc.mask >> l & 1) lanes[l]->res = r;
        return;
    }
    if (pc.kind == OP_SYNCWARP) return;
    const int wd = pc.width;
    for (int l = 0; l < 32; l++) {
        if (!(pc.mask >> l & 1)) continue;
        Fiber *f = lanes[l];
        const int lo = l / wd * wd, hi = lo + wd;
        int src = l;
        switch (pc.kind) {
        case OP_SHFL_IDX: src = lo + ((f->arg % wd) + wd) % wd; break;
        case OP_SHFL_UP: src = l - f->arg >= lo ? l - f->arg : l; break;
        case OP_SHFL_DOWN: src = l + f->arg < hi ? l + f->arg : l; break;
        /* CUDA: with width < 32 a lane may read earlier groups, a later group gives its own value */
        case OP_SHFL_XOR: src = (l ^ f->arg) < hi ? (l ^ f->arg) : l; break;
        }
        if (src < 0 || src > 31 || !(pc.mask >> src & 1)) {
            g_cur = f;
            g_threadIdx = f->tid;
            fail("%s at %s:%d reads lane %d, which is not in mask %s", kind_name(pc.kind), pc.file,
                 pc.line, src, lanes_str(pc.mask).c_str());
        }
        f->res = lanes[src]->val & vmask;
    }
}

void complete(Warp &w) {
    Block &b = *g_blk;
    Pending &pc = w.pc;
    if (pc.fn) {
        void *lanes[32][4] = {{nullptr}};
        for (Fiber &f : b.fibers)
            if (f.warp == (int)(&w - b.warps.data()) && (pc.mask >> f.lane & 1))
                memcpy(lanes[f.lane], f.p, sizeof f.p);
        pc.fn(lanes);
    } else {
        complete_exchange(w);
    }
    if (pc.kind == OP_SYNCWARP) w.sync_epoch++;
    for (Fiber &f : b.fibers)
        if (f.warp == (int)(&w - b.warps.data()) && f.state == F_WAIT_WARP && (pc.arrived >> f.lane & 1))
            make_ready(&f);
    pc.active = false;
}

void try_complete(Warp &w) {
    unsigned have = w.pc.arrived | (w.pc.kind == OP_SYNCWARP ? w.exited : 0u);
    if ((have & w.pc.mask) == w.pc.mask) complete(w);
}

Fiber *self(const char *what) {
    if (!g_blk || !g_cur) fail("%s called outside a kernel", what);
    return g_cur;
}

/* a lane arrives at a warp collective: checks, deposit is already in f, waits for completion */
void arrive(Fiber *f, int kind, const char *name, unsigned mask, int width, int size,
            collective_fn fn, const char *file, int line) {
    Warp &w = g_blk->warps[f->warp];
    const unsigned bit = 1u << f->lane;
    if (!(mask & bit))
        fail("%s at %s:%d: the calling lane is not in mask %s", name, file, line, lanes_str(mask).c_str());
    if (mask & ~w.members)
        fail("%s at %s:%d: mask %s names lanes this warp does not have (%s)", name, file, line,
             lanes_str(mask).c_str(), lanes_str(w.members).c_str());
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail("%s at %s:%d: width %d is not a power of 2 in [1, 32]", name, file, line, width);
    if (kind != OP_SYNCWARP && (mask & w.exited))
        fail("%s at %s:%d: lane(s) %s named in mask %s have exited", name, file, line,
             lanes_str(mask & w.exited).c_str(), lanes_str(mask).c_str());
    if (w.pc.active) {
        const Pending &pc = w.pc;
        if (pc.kind != kind || pc.mask != mask || pc.width != width || pc.size != size)
            fail("lanes disagree: this lane calls %s(mask %s) at %s:%d while lanes %s wait in %s(mask %s) at %s:%d",
                 name, lanes_str(mask).c_str(), file, line, lanes_str(pc.arrived).c_str(), pc.name,
                 lanes_str(pc.mask).c_str(), pc.file, pc.line);
    } else {
        w.pc = Pending{true, kind, name, mask, 0u, width, size, file, line, fn};
    }
    w.pc.arrived |= bit;
    f->state = F_WAIT_WARP;
    f->file = file;
    f->line = line;
    f->what = name;
    try_complete(w);
    yield_fiber(f);
}

[[noreturn]] void deadlock(void) {
    Block &b = *g_blk;
    std::string s;
    int shown = 0;
    for (size_t i = 0; i < b.fibers.size(); i++) {
        Fiber &f = b.fibers[i];
        if (f.state == F_DONE) continue;
        /* one line per run of consecutive threads waiting at the same place */
        size_t j = i;
        while (j + 1 < b.fibers.size() && b.fibers[j + 1].state == f.state &&
               b.fibers[j + 1].line == f.line && b.fibers[j + 1].file == f.file)
            j++;
        if (shown++ < 16) {
            char buf[256];
            snprintf(buf, sizeof buf, "\n  threads %zu..%zu (warp %d lane %d ..) wait in %s at %s:%d", i, j,
                     f.warp, f.lane, f.state == F_WAIT_BAR ? "__syncthreads" : f.what, f.file, f.line);
            s += buf;
        }
        i = j;
    }
    g_cur = nullptr;
    fail("deadlock: %d live threads, none can run:%s", b.live, s.c_str());
}

extern "C" [[noreturn]] EMU_NO_ASAN void emu_fiber_entry(void) {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_main_bottom, &g_main_size);
#endif
    Fiber *f = g_cur;
    g_blk->body(g_blk->ctx);
    /* the thread exits */
    Block &b = *g_blk;
    Warp &w = b.warps[f->warp];
    f->state = F_DONE;
    b.live--;
    w.exited |= 1u << f->lane;
    if (w.pc.active && (w.pc.mask >> f->lane & 1)) {
        if (w.pc.kind == OP_SYNCWARP) try_complete(w);
        else
            fail("lane exited while lanes %s wait for it in %s(mask %s) at %s:%d",
                 lanes_str(w.pc.arrived).c_str(), w.pc.name, lanes_str(w.pc.mask).c_str(), w.pc.file,
                 w.pc.line);
    }
    if (b.bar_count > 0 && b.bar_count == b.live) release_barrier();
#if EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, g_main_bottom, g_main_size);
#endif
#if EMU_ASM_SWITCH
    void *dead;
    emu_ctx_switch(&dead, g_sched_sp);
#else
    setcontext(&g_sched_uc);
#endif
    __builtin_unreachable();
}

#if !EMU_ASM_SWITCH
void uc_entry(void) { emu_fiber_entry(); }
#endif

char *get_stack(size_t i) {
    while (g_stacks.size() <= i) {
        void *p = mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) fail("mmap of a fiber stack: %s", strerror(errno));
        mprotect(p, kGuard, PROT_NONE); /* overflow -> SIGSEGV, not silent corruption */
        g_stacks.push_back((char *)p + kGuard);
    }
    return g_stacks[i];
}

void init_fiber(Fiber &f, size_t i) {
    f.stack = get_stack(i);
    f.stack_size = kStack;
#if EMU_ASAN
    /* frames of the previous fiber on this stack that never returned (entry, exit switch) */
    ASAN_UNPOISON_MEMORY_REGION(f.stack + kStack - 16384, 16384);
#endif
#if EMU_ASM_SWITCH
    uint64_t *sp = (uint64_t *)(((uintptr_t)(f.stack + kStack)) & ~(uintptr_t)15);
    *--sp = 0;                              /* emu_fiber_entry's (never used) return address */
    *--sp = (uint64_t)(uintptr_t)&emu_fiber_entry;
    for (int r = 0; r < 6; r++) *--sp = 0;  /* rbp rbx r12 r13 r14 r15 */
    *--sp = 0x1f80ull | (0x037full << 32);  /* MXCSR, x87 control word: defaults */
    f.sp = sp;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = f.stack;
    f.uc.uc_stack.ss_size = kStack;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, uc_entry, 0);
#endif
}

/* ---- race check (built with -DEMU_RACE, the test code compiled with -fsanitize=thread) -------
 * GCC's ThreadSanitizer instrumentation calls __tsan_readN / __tsan_writeN before every memory
 * access of the instrumented code; this file provides those hooks instead of libtsan and
 * checks the accesses that fall into the running block's shared memory.  Per byte it keeps
 * the last write (thread, barrier epoch, warp epoch) and the reads of the current barrier
 * interval (warps that read, the single reader or "several", the latest warp epoch).  Two
 * accesses of different threads, at least one a write, conflict unless a __syncthreads
 * completed between them (block epoch) or, within one warp, a __syncwarp did (warp epoch).
 * Shuffles and WMMA/mma collectives do not order shared memory (CUDA guarantees memory
 * ordering for __syncwarp and barriers only).  A conflict is fatal, with both threads, the
 * variable and both access sites (binary+offset, for addr2line). */
struct Shadow {
    int16_t wt, rt;          /* last writer, reader (-1 none, -2 several) */
    uint32_t wb, ww, rb, rw; /* epochs: write block/warp, reads' block epoch and latest warp epoch */
    uint32_t rwarps;         /* warps that read in epoch rb */
    const void *wpc, *rpc;
};

Shadow *new_shadow(size_t n) {
#if defined(EMU_RACE)
    Shadow *s = (Shadow *)calloc(n ? n : 1, sizeof(Shadow));
    if (!s) fail("out of memory for the race shadow");
    for (size_t i = 0; i < n; i++) s[i].wt = s[i].rt = -1;
    return s;
#else
    (void)n;
    return nullptr;
#endif
}

void run_block(const char *name, dim3 grid, dim3 block, uint3 bidx, size_t smem, body_fn body,
               void *ctx) {
    Block b;
    b.kname = name;
    b.nthreads = (int)(block.x * block.y * block.z);
    b.live = b.nthreads;
    b.bar_count = 0;
    b.bar_file = nullptr;
    b.bar_line = 0;
    b.static_bytes = 0;
    b.bar_epoch = 1;
    b.body = body;
    b.ctx = ctx;
    b.dyn_size = smem;
    b.dyn = nullptr;
    b.dyn_shadow = new_shadow(smem);
    if (posix_memalign(&b.dyn, 128, smem) != 0) fail("out of memory for %zu B of dynamic smem", smem);
    static const int kPoison[3] = {0xff, 0x7f, 0xfe};
    b.poison = kPoison[rng() % 3];
    if (smem) memset(b.dyn, b.poison, smem);
    const int nw = (b.nthreads + 31) / 32;
    b.warps.assign(nw, Warp());
    for (int w = 0; w < nw; w++) {
        const int n = b.nthreads - 32 * w < 32 ? b.nthreads - 32 * w : 32;
        b.warps[w].members = n == 32 ? 0xffffffffu : (1u << n) - 1;
        b.warps[w].exited = 0;
        b.warps[w].pc.active = false;
        b.warps[w].log_base = 0;
        b.warps[w].sync_epoch = 1;
    }
    b.fibers.resize(b.nthreads);
    for (int t = 0; t < b.nthreads; t++) {
        Fiber &f = b.fibers[t];
        memset(&f, 0, sizeof f);
        f.tid = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
        f.linear = t;
        f.warp = t / 32;
        f.lane = t % 32;
        init_fiber(f, t);
    }
    b.ready.assign(nw, std::vector<Fiber *>());
    b.nready = 0;
    for (Fiber &f : b.fibers) {
        b.ready[f.warp].push_back(&f);
        b.nready++;
    }
    b.by_priority = rng() & 1;
    b.prio_order.resize(nw);
    for (int w = 0; w < nw; w++) b.prio_order[w] = w;
    for (int w = nw; w > 1; w--) std::swap(b.prio_order[w - 1], b.prio_order[rng() % w]);
    g_blk = &b;
    g_blockIdx = bidx;
    g_blockDim = block;
    g_gridDim = grid;
    while (b.live > 0) {
        if (b.nready == 0) deadlock();
        std::vector<Fiber *> *q = nullptr;
        if (b.by_priority) { /* the highest-priority warp with a ready lane runs */
            for (int w : b.prio_order)
                if (!b.ready[w].empty()) { q = &b.ready[w]; break; }
        } else {               /* uniform over all ready threads */
            size_t k = rng() % b.nready;
            for (auto &r : b.ready) {
                if (k < r.size()) { q = &r; break; }
                k -= r.size();
            }
        }
        size_t k = rng() % q->size();
        Fiber *f = (*q)[k];
        (*q)[k] = q->back();
        q->pop_back();
        b.nready--;
        g_cur = f;
        g_threadIdx = f->tid;
        f->state = F_RUNNING;
        switch_to(f);
        g_cur = nullptr;
    }
    for (int w = 0; w < nw; w++) {
        uint64_t n0 = UINT64_MAX;
        for (Fiber &f : b.fibers) {
            if (f.warp != w) continue;
            if (n0 == UINT64_MAX) n0 = f.op_seq;
            else if (f.op_seq != n0)
                fail("warp %d: lanes issued different numbers of wmma operations (%llu vs %llu)", w,
                     (unsigned long long)n0, (unsigned long long)f.op_seq);
        }
    }
    if (b.static_bytes + smem > kSmemOptin)
        fail("static (%zu B) + dynamic (%zu B) shared memory exceed the device's %zu B",
             b.static_bytes, smem, kSmemOptin);
    for (SmemVar &v : b.statics) {
        free(v.p);
        free(v.shadow);
    }
    free(b.dyn_shadow);
    free(b.dyn);
    g_blk = nullptr;
}

}  // namespace

/* ---- device-side API ------------------------------------------------------------------------ */

int lane_id(void) { return self("lane id")->lane; }

void syncthreads(const char *file, int line) {
    Fiber *f = self("__syncthreads");
    Block &b = *g_blk;
    if (b.bar_count == 0) {
        b.bar_file = file;
        b.bar_line = line;
    } else if (b.bar_line != line || strcmp(b.bar_file, file) != 0) {
        fail("divergent __syncthreads: this thread is at %s:%d, %d others wait at %s:%d", file, line,
             b.bar_count, b.bar_file, b.bar_line);
    }
    b.bar_count++;
    f->state = F_WAIT_BAR;
    f->file = file;
    f->line = line;
    f->what = "__syncthreads";
    if (b.bar_count == b.live) release_barrier();
    yield_fiber(f);
}

void syncwarp(unsigned mask, const char *file, int line) {
    Fiber *f = self("__syncwarp");
    arrive(f, OP_SYNCWARP, "__syncwarp", mask, 32, 0, nullptr, file, line);
}

uint64_t warp_exchange(int kind, unsigned mask, uint64_t val, int arg, int width, int size,
                       const char *file, int line) {
    Fiber *f = self(kind_name(kind));
    f->val = val;
    f->arg = arg;
    arrive(f, kind, kind_name(kind), mask, width, size, nullptr, file, line);
    return f->res;
}

void warp_collective(int kind, const char *name, void *p0, void *p1, void *p2, void *p3,
                     collective_fn fn, const char *file, int line) {
    Fiber *f = self(name);
    f->p[0] = p0;
    f->p[1] = p1;
    f->p[2] = p2;
    f->p[3] = p3;
    arrive(f, kind, name, 0xffffffffu, 32, 0, fn, file, line);
}

void warp_op_log(const char *what, const void *ptr, unsigned ldm, int layout, const char *file,
                 int line) {
    Fiber *f = self(what);
    Warp &w = g_blk->warps[f->warp];
    if (w.members != 0xffffffffu) fail("%s at %s:%d in a partial warp", what, file, line);
    const uint64_t s = f->op_seq++;
    const size_t idx = (size_t)(s - w.log_base);
    if (idx == w.log.size()) {
        w.log.push_back(OpRec{what, ptr, ldm, layout, file, line, 1});
    } else {
        OpRec &r = w.log[idx];
        if (strcmp(r.what, what) != 0 || r.ptr != ptr || r.ldm != ldm || r.layout != layout)
            fail("lanes disagree on the warp's wmma op #%llu: this lane %s(ptr %p, ldm %u, layout %d) at "
                 "%s:%d, an earlier lane %s(ptr %p, ldm %u, layout %d) at %s:%d",
                 (unsigned long long)s, what, ptr, ldm, layout, file, line, r.what, r.ptr, r.ldm,
                 r.layout, r.file, r.line);
        r.count++;
    }
    while (!w.log.empty() && w.log.front().count == 32) {
        w.log.pop_front();
        w.log_base++;
    }
}

void *dynamic_smem(size_t align) {
    self("extern __shared__");
    if (align > 128) fail("extern __shared__ aligned to %zu > 128 bytes", align);
    return g_blk->dyn;
}

void *static_smem(const void *tag, size_t size, size_t align, const char *name) {
    self("__shared__");
    Block &b = *g_blk;
    for (SmemVar &v : b.statics)
        if (v.tag == tag) return v.p;
    void *p = nullptr;
    if (posix_memalign(&p, align < 16 ? 16 : align, size) != 0) fail("out of memory for __shared__ %s", name);
    memset(p, b.poison, size);
    b.statics.push_back(SmemVar{tag, p, size, name, new_shadow(size)});
    b.static_bytes += size;
    if (b.static_bytes > kSmemStaticMax)
        fail("static shared memory (%zu B with %s) exceeds %zu B", b.static_bytes, name, kSmemStaticMax);
    return p;
}

/* ---- matrix ops ------------------------------------------------------------------------------- */

namespace {
void wmma_complete(void *const (*lanes)[4]) {
    float A[16][16], B[16][16], C[16][16];
    for (int l = 0; l < 32; l++) {
        const __half *a = (const __half *)lanes[l][1], *bb = (const __half *)lanes[l][2];
        const float *c = (const float *)lanes[l][3];
        for (int i = 0; i < 8; i++) {
            int r, col;
            nvcuda::wmma::detail::rc_of(l, i, r, col);
            A[r][col] = __half2float(a[i]);
            B[r][col] = __half2float(bb[i]);
            C[r][col] = c[i];
        }
    }
    for (int l = 0; l < 32; l++) {
        float *d = (float *)lanes[l][0];
        for (int i = 0; i < 8; i++) {
            int r, col;
            nvcuda::wmma::detail::rc_of(l, i, r, col);
            double acc = C[r][col];
            for (int k = 0; k < 16; k++) acc += (double)A[r][k] * B[k][col];
            d[i] = (float)acc;
        }
    }
}

float half_bits(uint32_t reg, int hi) {
    uint16_t h = (uint16_t)(hi ? reg >> 16 : reg & 0xffff);
    __half x;
    memcpy(&x, &h, 2);
    return __half2float(x);
}

/* mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, fragment layouts from the PTX ISA,
 * section 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type"
 * (https://docs.nvidia.com/cuda/parallel-thread-execution/#warp-level-matrix-fragment-mma-16816-float),
 * with groupID = laneid >> 2, threadID_in_group = laneid % 4, and each .f16x2 register holding
 * two consecutive elements, the lower-numbered one in the low 16 bits ("Elements (low to high)"):
 *   A (16x16, four .f16x2 regs, elements a0..a7):
 *     row = groupID for ai with 0 <= i < 2 || 4 <= i < 6, groupID + 8 otherwise
 *     col = threadID_in_group * 2 + (i & 1), + 8 for i >= 4
 *   B (16x8, two .f16x2 regs, b0..b3):
 *     row = threadID_in_group * 2 + (i & 1), + 8 for i >= 2;  col = groupID
 *   C, D (16x8, four .f32 regs, c0..c3):
 *     row = groupID for i < 2, groupID + 8 for i >= 2;  col = threadID_in_group * 2 + (i & 1)
 * Products of FP16 values are exact in double; the sum is rounded to FP32 once (a tensor core
 * rounds/truncates at its own points: differences are far below the tests' tolerances). */
void mma16816_complete(void *const (*lanes)[4]) {
    float A[16][16], B[16][8], C[16][8];
    int seenA[16][16] = {{0}}, seenB[16][8] = {{0}}, seenC[16][8] = {{0}};
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l % 4;
        const uint32_t *a = (const uint32_t *)lanes[l][1], *b = (const uint32_t *)lanes[l][2];
        const float *c = (const float *)lanes[l][0];
        for (int i = 0; i < 8; i++) {
            const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
            const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
            A[row][col] = half_bits(a[i / 2], i & 1);
            seenA[row][col]++;
        }
        for (int i = 0; i < 4; i++) {
            const int row = t * 2 + (i & 1) + (i >= 2 ? 8 : 0), col = g;
            B[row][col] = half_bits(b[i / 2], i & 1);
            seenB[row][col]++;
        }
        for (int i = 0; i < 4; i++) {
            const int row = i < 2 ? g : g + 8, col = t * 2 + (i & 1);
            C[row][col] = c[i];
            seenC[row][col]++;
        }
    }
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            if (seenA[r][c] != 1 || (c < 8 && (seenB[r][c] != 1 || seenC[r][c] != 1)))
                fail("mma.m16n8k16 layout table does not cover the tiles exactly once (emulator bug)");
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l % 4;
        float *d = (float *)lanes[l][0];
        for (int i = 0; i < 4; i++) {
            const int row = i < 2 ? g : g + 8, col = t * 2 + (i & 1);
            double acc = C[row][col];
            for (int k = 0; k < 16; k++) acc += (double)A[row][k] * B[k][col];
            d[i] = (float)acc;
        }
    }
}

/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 (PTX ISA, "Warp-level matrix load
 * instruction: ldmatrix"): lanes 8i..8i+7 give the addresses of rows 0..7 of matrix i; lane l
 * receives in register i the two 16-bit elements of matrix i at row l / 4, columns 2 (l % 4) and
 * 2 (l % 4) + 1 (low half first), or with .trans those at rows 2 (l % 4), 2 (l % 4) + 1 of
 * column l / 4. */
void ldmatrix_complete(void *const (*lanes)[4], bool trans) {
    uint16_t M[4][8][8];
    for (int l = 0; l < 32; l++) memcpy(M[l / 8][l % 8], lanes[l][1], 16);
    for (int l = 0; l < 32; l++) {
        uint32_t *r = (uint32_t *)lanes[l][0];
        const int g = l / 4, t = l % 4;
        for (int i = 0; i < 4; i++) {
            const uint16_t lo = trans ? M[i][2 * t][g] : M[i][g][2 * t];
            const uint16_t hi = trans ? M[i][2 * t + 1][g] : M[i][g][2 * t + 1];
            r[i] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}
void ldmatrix_plain(void *const (*lanes)[4]) { ldmatrix_complete(lanes, false); }
void ldmatrix_trans(void *const (*lanes)[4]) { ldmatrix_complete(lanes, true); }
}  // namespace

void ldmatrix_x4(uint32_t *r, const uint32_t *row, bool trans, const char *file, int line) {
    warp_collective(trans ? OP_LDMATRIX_T : OP_LDMATRIX, trans ? "ldmatrix.x4.trans" : "ldmatrix.x4",
                    r, (void *)row, nullptr, nullptr, trans ? ldmatrix_trans : ldmatrix_plain, file, line);
}

void mma_m16n8k16(float *d, const uint32_t *a, uint32_t b0, uint32_t b1, const char *file, int line) {
    uint32_t b[2] = {b0, b1};
    /* d is both C (read) and D (written): the completion reads all C first */
    warp_collective(OP_MMA16816, "mma.sync.m16n8k16", d, (void *)a, b, nullptr, mma16816_complete,
                    file, line);
}

}  // namespace emu

void nvcuda::wmma::detail::mma_sync_impl(float *d, const __half *a, const __half *b, const float *c,
                                         const char *file, int line) {
    ::emu::warp_op_log("wmma::mma_sync", nullptr, 0, 0, file, line);
    ::emu::warp_collective(::emu::OP_WMMA_MMA, "wmma::mma_sync", d, (void *)a, (void *)b, (void *)c,
                           ::emu::wmma_complete, file, line);
}

/* ---- launching --------------------------------------------------------------------------------- */

namespace emu {

void set_func_attr(const void *key, int attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) g_max_dyn[key] = value;
}

cudaError_t last_error(bool clear) {
    cudaError_t e = g_last;
    if (clear) g_last = cudaSuccess;
    return e;
}

void run_grid(const char *name, const void *key, dim3 grid, dim3 block, size_t smem, body_fn body,
              void *ctx) {
    if (g_blk) fail("kernel %s launched from inside kernel %s (no dynamic parallelism)", name, g_blk->kname);
    if (!g_seeded) {
        const char *s = getenv("VITD_SEED");
        set_seed(s ? strtoull(s, nullptr, 10) : (uint64_t)time(nullptr));
    }
    const unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
    if (nt == 0 || nt > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
        g_last = cudaErrorInvalidConfiguration;
        return;
    }
    if (smem > kSmemDefault) {
        auto it = g_max_dyn.find(key);
        if (it == g_max_dyn.end() || (size_t)it->second < smem || smem > kSmemOptin) {
            g_last = cudaErrorInvalidValue; /* as the device: the launch fails, nothing runs */
            return;
        }
    }
    const size_t nb = (size_t)grid.x * grid.y * grid.z;
    std::vector<uint32_t> order(nb);
    for (size_t i = 0; i < nb; i++) order[i] = (uint32_t)i;
    for (size_t i = nb; i > 1; i--) std::swap(order[i - 1], order[rng() % i]);
    for (size_t i = 0; i < nb; i++) {
        const uint32_t o = order[i];
        uint3 bidx{(unsigned)(o % grid.x), (unsigned)((o / grid.x) % grid.y),
                   (unsigned)(o / ((size_t)grid.x * grid.y))};
        run_block(name, grid, block, bidx, smem, body, ctx);
    }
}

}  // namespace emu

#if defined(EMU_RACE)
namespace emu {
namespace {
std::string where(const void *pc) {
    Dl_info di;
    char buf[512];
    if (pc && dladdr(pc, &di) && di.dli_fname)
        snprintf(buf, sizeof buf, "%s+0x%lx", di.dli_fname,
                 (unsigned long)((uintptr_t)pc - (uintptr_t)di.dli_fbase - 1));
    else
        snprintf(buf, sizeof buf, "%p", pc);
    return buf;
}

[[noreturn]] void race(const char *var, size_t off, bool write, const void *pc, int other,
                       const char *what, const void *opc) {
    Block &b = *g_blk;
    const Fiber &o = b.fibers[other];
    fail("shared-memory race on %s+%zu: this thread %s it (at %s) while thread (%u,%u,%u) (warp %d lane %d) "
         "%s it in the same interval, with no __syncthreads%s between (at %s); "
         "addr2line -f -C -e BINARY +OFFSET names the lines",
         var, off, write ? "writes" : "reads", where(pc).c_str(), o.tid.x, o.tid.y, o.tid.z, o.warp, o.lane,
         what, o.warp == g_cur->warp ? " or __syncwarp" : "", where(opc).c_str());
}

void check(Shadow &s, const char *var, size_t off, bool write, const void *pc) {
    Block &b = *g_blk;
    Fiber *f = g_cur;
    const int t = f->linear;
    const uint32_t B = b.bar_epoch, W = b.warps[f->warp].sync_epoch;
    if (s.wt >= 0 && s.wt != t && s.wb == B &&
        !(b.fibers[s.wt].warp == f->warp && s.ww < W))
        race(var, off, write, pc, s.wt, "wrote", s.wpc);
    if (write) {
        if (s.rb == B && s.rwarps) {
            if (s.rwarps & ~(1u << f->warp)) {
                int other = s.rt >= 0 ? s.rt : -1;
                if (other < 0 || b.fibers[other].warp == f->warp)
                    for (Fiber &g : b.fibers)
                        if (g.warp != f->warp && (s.rwarps >> g.warp & 1)) { other = g.linear; break; }
                race(var, off, write, pc, other, "read", s.rpc);
            }
            if (s.rt != t && s.rw == W) race(var, off, write, pc, s.rt >= 0 ? s.rt : (t ^ 1), "read", s.rpc);
        }
        s.wt = (int16_t)t;
        s.wb = B;
        s.ww = W;
        s.wpc = pc;
    } else {
        if (s.rb != B || (s.rwarps == 1u << f->warp && W > s.rw)) {
            /* a new barrier interval, or reads of this warp only, all before its latest
             * __syncwarp: those are ordered before anything this warp does from now on */
            s.rb = B;
            s.rwarps = 0;
            s.rt = -1;
            s.rw = 0;
        }
        s.rwarps |= 1u << f->warp;
        s.rt = (s.rt == -1 || s.rt == t) ? (int16_t)t : (int16_t)-2;
        if (W > s.rw) s.rw = W;
        s.rpc = pc;
    }
}

inline void access(const void *addr, size_t n, bool write, const void *pc) {
    if (!g_cur || !g_blk) return;
    Block &b = *g_blk;
    const uintptr_t a = (uintptr_t)addr;
    Shadow *sh = nullptr;
    const char *var = nullptr;
    size_t off = 0, size = 0;
    if (b.dyn_size && a >= (uintptr_t)b.dyn && a < (uintptr_t)b.dyn + b.dyn_size) {
        sh = b.dyn_shadow;
        var = "extern __shared__";
        off = a - (uintptr_t)b.dyn;
        size = b.dyn_size;
    } else {
        for (SmemVar &v : b.statics)
            if (a >= (uintptr_t)v.p && a < (uintptr_t)v.p + v.size) {
                sh = v.shadow;
                var = v.name;
                off = a - (uintptr_t)v.p;
                size = v.size;
                break;
            }
    }
    if (!sh) return;
    for (size_t i = 0; i < n && off + i < size; i++) check(sh[off + i], var, off + i, write, pc);
}
}  // namespace
}  // namespace emu

#define EMU_HOOK(n)                                                                               \
    extern "C" void __tsan_read##n(void *p) { emu::access(p, n, false, __builtin_return_address(0)); } \
    extern "C" void __tsan_write##n(void *p) { emu::access(p, n, true, __builtin_return_address(0)); } \
    extern "C" void __tsan_unaligned_read##n(void *p) { emu::access(p, n, false, __builtin_return_address(0)); } \
    extern "C" void __tsan_unaligned_write##n(void *p) { emu::access(p, n, true, __builtin_return_address(0)); }
EMU_HOOK(1)
EMU_HOOK(2)
EMU_HOOK(4)
EMU_HOOK(8)
EMU_HOOK(16)
extern "C" void __tsan_read_range(void *p, unsigned long n) { emu::access(p, n, false, __builtin_return_address(0)); }
extern "C" void __tsan_write_range(void *p, unsigned long n) { emu::access(p, n, true, __builtin_return_address(0)); }
extern "C" void __tsan_init(void) {}
extern "C" void __tsan_func_entry(void *) {}
extern "C" void __tsan_func_exit(void) {}
extern "C" void __tsan_vptr_update(void **, void *) {}
extern "C" void __tsan_vptr_read(void **) {}
#endif

/* ---- runtime API ------------------------------------------------------------------------------- */

cudaError_t cudaMalloc(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind) {
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t) {
    return cudaMemcpy(dst, src, n, k);
}
cudaError_t cudaMemset(void *p, int v, size_t n) { memset(p, v, n); return cudaSuccess; }
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { return cudaMemset(p, v, n); }
cudaError_t cudaGetLastError(void) { return emu::last_error(true); }
cudaError_t cudaPeekAtLastError(void) { return emu::last_error(false); }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "vitd CPU emulator (sm_90 limits)");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 1;
    p->sharedMemPerBlock = emu::kSmemDefault;
    p->sharedMemPerBlockOptin = emu::kSmemOptin;
    p->totalGlobalMem = (size_t)1 << 34;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNotSupported: return "operation not supported (CPU emulator)";
    }
    return "unknown error";
}
cudaError_t cudaEventCreate(cudaEvent_t *) { return cudaErrorNotSupported; }
cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaErrorNotSupported; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaErrorNotSupported; }
cudaError_t cudaEventElapsedTime(float *, cudaEvent_t, cudaEvent_t) { return cudaErrorNotSupported; }
