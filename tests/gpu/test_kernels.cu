/* test_kernels.cu: every kernel in kernels/ against its float64 CPU reference (cpu_ref.h), on
 * fresh random inputs each run (seed printed; VITD_SEED replays), outputs poisoned with NaN
 * first; the head-training kernels (linear_ce.cuh) against the CPU backend's arithmetic
 * (engine/train/train.c), bit-exact where the kernels claim it.  Also measures what cuBLASLt's
 * GELU_BIAS epilogue computes (erf or tanh form) and how far the tanh form is from exact GELU.
 * Tolerances: atol + rtol*|ref|, chosen from the kernels' FP16 roundings (stated per test).
 * The one source of the per-kernel checks, built twice:
 *   build/tests/gpu/test_kernels     nvcc, needs a GPU (make gpu-tests; run by bench/gpu_check.sh)
 *   build-asan/tests/test_emu_kernels, test_emu_race
 *                                    the same file on the CPU SIMT emulator (tests/emu/README.md,
 *                                    VITD_EMU defined), g++ with ASan+UBSan or with the race check,
 *                                    in make test.  Differences there: the emulator's seed also
 *                                    drives the thread order; buffers are exact-size (ASan sees
 *                                    every byte past the end); shapes marked GPU_EMU(gpu, emu)
 *                                    run smaller (time); cuBLASLt is reported as skipped. */
#include <algorithm>

#include "gpu_harness.h"  /* first: on the emulator its cuda_runtime.h defines VITD_EMU */
#ifndef VITD_EMU
#include <cublasLt.h>
#endif
#include "cpu_ref.h"
#include "patch_embed.cuh"
#include "layernorm.cuh"
#include "attention.cuh"
#include "attention_mma.cuh"
#include "gelu.cuh"
#include "rollout.cuh"
#include "softmax_topk.cuh"
#include "linear_ce.cuh"
#include "quant.cuh"
#include "cpu/cpu_gemm_i8.h"   /* vit_i8_quant1: the CPU engine's INT8 rounding, the reference */

/* a shape the GPU runs in full and the emulator smaller */
#ifdef VITD_EMU
#define GPU_EMU(gpu, emu) (emu)
#else
#define GPU_EMU(gpu, emu) (gpu)
#endif

static size_t g_optin;

/* im2col on (B, C, H, W) input, patch P (H != W: a non-square input, gh != gw), then
 * embed_assemble on its token count */
static void test_im2col_embed(int H, int W, int P) {
    const int B = 3, C = 3, gh = H / P, gw = W / P, Np = gh * gw, D = 48, npf = 2, T = npf + Np;
    char name[128];
    std::vector<float> in((size_t)B * C * H * W);
    gh_fill(in, 2.f);
    float *din = gh_up(in);
    __half *dp = gh_dev<__half>((size_t)B * Np * C * P * P);
    im2col_f16(dp, din, B, C, H, W, P, gh, gw, 0);
    GH_SYNC();
    std::vector<double> ref = ref_im2col(in, B, C, H, W, P, gh, gw);
    for (auto &r : ref) r = __half2float(__float2half((float)r));  /* exact FP16 rounding */
    snprintf(name, sizeof name, "im2col_f16 %dx%d P=%d (exact fp16 rounding)", H, W, P);
    gh_check(name, gh_down_half(dp, ref.size()), ref, 0, 0);

    /* FP16 input (vit_forward_f16): the host rounds (to nearest even, as __float2half), the
     * __half kernel only gathers; its patches must be the FP32 kernel's bit for bit, here on the
     * random values plus rounding ties, subnormals, values that overflow to inf, and -0 */
    {
        std::vector<float> in2 = in;
        const float special[] = {65520.f, -65519.f, 70000.f, 1.f + 0x1p-11f, 1.f + 0x3p-11f,
                                 0x1p-25f, 0x3p-25f, 1e-7f, -0.f, 0x1.ffep-15f, 2049.f, -2051.f};
        for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
            in2[(i * 7919) % in2.size()] = special[i];
        const size_t np = ref.size();
        float *din2 = gh_up(in2);
        __half *din2h = gh_up_half(in2);           /* the host's rounding */
        __half *dp32 = gh_dev<__half>(np), *dp16 = gh_dev<__half>(np);
        im2col_f16(dp32, din2, B, C, H, W, P, gh, gw, 0);
        im2col_f16(dp16, din2h, B, C, H, W, P, gh, gw, 0);
        GH_SYNC();
        std::vector<__half> a(np), b(np);
        GH_CUDA(cudaMemcpy(a.data(), dp32, np * sizeof(__half), cudaMemcpyDeviceToHost));
        GH_CUDA(cudaMemcpy(b.data(), dp16, np * sizeof(__half), cudaMemcpyDeviceToHost));
        size_t diff = 0;
        for (size_t i = 0; i < np; i++) diff += memcmp(&a[i], &b[i], sizeof(__half)) != 0;
        gh_result(diff == 0, "im2col_f16 %dx%d on __half input == on float input, bit for bit (%zu of %zu differ)",
                  H, W, diff, np);
        cudaFree(din2); cudaFree(din2h); cudaFree(dp32); cudaFree(dp16);
    }

    std::vector<float> pe((size_t)B * Np * D), tok((size_t)npf * D), pos((size_t)T * D);
    gh_fill(pe, 1.f); gh_round_half(pe); gh_fill(tok, 1.f); gh_fill(pos, 1.f);
    __half *dpe = gh_up_half(pe);
    float *dtok = gh_up(tok), *dpos = gh_up(pos);
    __half *dres = gh_dev<__half>((size_t)B * T * D);
    embed_assemble(dres, dpe, dtok, dpos, B, T, npf, D, 0);
    GH_SYNC();
    std::vector<double> r2((size_t)B * T * D);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++)
                r2[((size_t)b * T + t) * D + d] =
                    (double)(t < npf ? tok[t * D + d] : pe[((size_t)b * Np + t - npf) * D + d]) + pos[t * D + d];
    /* the FP16 stream: one rounding of the FP32 sum, <= 2^-11 relative (+ FP32's 2^-24), or half
     * of FP16's subnormal step 2^-24 near zero */
    snprintf(name, sizeof name, "embed_assemble T=%d (fp16 res)", T);
    gh_check(name, gh_down_half(dres, r2.size()), r2, 3e-8, 4.9e-4);
    cudaFree(din); cudaFree(dp); cudaFree(dpe); cudaFree(dtok); cudaFree(dpos); cudaFree(dres);
}

/* prefix_rows: the last layer's CLS [+ dist] rows, compacted; exact copies (vector and scalar
 * paths, and a misaligned destination that forces the scalar one) */
static void test_prefix_rows(int B, int T, int npf, int D, int offset) {
    std::vector<float> x((size_t)B * T * D);
    gh_fill(x, 3.f);
    gh_round_half(x);
    __half *dx = gh_up_half(x), *dout = gh_dev<__half>((size_t)B * npf * D + offset);
    prefix_rows(dout + offset, dx, B, T, npf, D, 0);
    GH_SYNC();
    std::vector<double> ref((size_t)B * npf * D);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < npf; t++)
            for (int d = 0; d < D; d++) ref[((size_t)b * npf + t) * D + d] = x[((size_t)b * T + t) * D + d];
    char name[96];
    snprintf(name, sizeof name, "prefix_rows B=%d T=%d npf=%d D=%d%s", B, T, npf, D, offset ? " (unaligned)" : "");
    gh_check(name, gh_down_half(dout + offset, ref.size()), ref, 0, 0);
    cudaFree(dx); cudaFree(dout);
}

/* host copy of the kernel's add: FP32 sum of two FP16 values, rounded once to FP16 */
static inline float fp16_add(float a, float b) { return __half2float(__float2half(a + b)); }

static void test_layernorms(int N, int D) {
    char name[128];
    const float eps = 1e-6f;
    /* the residual stream is FP16: res and branch hold FP16 values */
    std::vector<float> res((size_t)N * D), br((size_t)N * D), w(D), b(D);
    gh_fill(res, 3.f, 0.5f); gh_round_half(res); gh_fill(br, 1.f); gh_round_half(br);
    gh_fill(w, 0.5f, 1.f); gh_fill(b, 0.2f);
    float *dw = gh_up(w), *db = gh_up(b);
    __half *dres = gh_up_half(res), *dbr = gh_up_half(br), *dout = gh_dev<__half>((size_t)N * D);
    residual_layernorm(dout, dres, dbr, dw, db, N, D, eps, 0);
    GH_SYNC();
    std::vector<double> rsum((size_t)N * D), rsum16((size_t)N * D), rout((size_t)N * D);
    for (size_t i = 0; i < rsum.size(); i++) {
        rsum[i] = (double)res[i] + br[i];
        rsum16[i] = fp16_add(res[i], br[i]);
    }
    /* the kernel normalizes the FP16 value it stores (layernorm.cuh): the reference is the
     * float64 LayerNorm of the stored values; the tolerance is the FP16 output's rounding
     * (2^-11 relative) plus FP32 statistics */
    for (int r = 0; r < N; r++) ref_ln_row(&rout[(size_t)r * D], &rsum16[(size_t)r * D], w.data(), b.data(), D, eps);
    std::vector<float> got_res = gh_down_half(dres, rsum.size());
    snprintf(name, sizeof name, "residual_layernorm res N=%d D=%d (fp16 res vs float64 sum)", N, D);
    gh_check(name, got_res, rsum, 3e-8, 4.9e-4);
    snprintf(name, sizeof name, "residual_layernorm res N=%d D=%d (exact fp16 rounding of the fp32 sum)", N, D);
    gh_check(name, got_res, rsum16, 0, 0);
    snprintf(name, sizeof name, "residual_layernorm out N=%d D=%d (fp16 out)", N, D);
    gh_check(name, gh_down_half(dout, rout.size()), rout, 1e-3, 1e-3);
    /* and against the float64 LayerNorm of the unrounded sum (the CPU reference's numbers):
     * the res rounding adds |x| 2^-11 rstd |w| <= ~2e-3 here */
    for (int r = 0; r < N; r++) ref_ln_row(&rout[(size_t)r * D], &rsum[(size_t)r * D], w.data(), b.data(), D, eps);
    snprintf(name, sizeof name, "residual_layernorm out N=%d D=%d (vs LN of the unrounded sum)", N, D);
    gh_check(name, gh_down_half(dout, rout.size()), rout, 3e-3, 2e-3);
    /* branch == NULL: LayerNorm only, res untouched */
    std::vector<float> res1((size_t)N * D);
    gh_fill(res1, 2.f, -0.3f);
    gh_round_half(res1);
    __half *dres1 = gh_up_half(res1);
    residual_layernorm(dout, dres1, nullptr, dw, db, N, D, eps, 0);
    GH_SYNC();
    std::vector<double> x1((size_t)N * D), rout1((size_t)N * D);
    for (size_t i = 0; i < x1.size(); i++) x1[i] = res1[i];
    for (int r = 0; r < N; r++) ref_ln_row(&rout1[(size_t)r * D], &x1[(size_t)r * D], w.data(), b.data(), D, eps);
    snprintf(name, sizeof name, "residual_layernorm branch=NULL N=%d D=%d: res untouched, LN out", N, D);
    gh_check(name, gh_down_half(dres1, x1.size()), x1, 0, 0);
    gh_check(name, gh_down_half(dout, rout1.size()), rout1, 1e-3, 1e-3);
    cudaFree(dres1);

    /* final LN on the prefix rows: rows of a (Bq, T, D) FP16 stream, per = 2 (CLS + dist); the
     * FP32 sum res + branch is normalized unrounded (nothing is stored back) */
    const int T = 5, per = 2, Bq = N / T;
    if (Bq >= 1) {
        std::vector<float> res2((size_t)Bq * T * D);
        gh_fill(res2, 2.f);
        gh_round_half(res2);
        __half *dres2 = gh_up_half(res2);
        /* final_layernorm on `pr` of each image's first rows (w == NULL when !ln: the copy)
         * against res2 + br in float64, LN'd when ln */
        auto check_final = [&](int pr, bool ln, double tol, const char *what) {
            float *d = gh_dev<float>((size_t)Bq * pr * D);
            final_layernorm(d, dres2, dbr, ln ? dw : nullptr, ln ? db : nullptr, Bq * pr, pr, T, D, eps, 0);
            GH_SYNC();
            std::vector<double> x(D), ref((size_t)Bq * pr * D);
            for (int r = 0; r < Bq * pr; r++) {
                size_t src = (size_t)(r / pr) * T + r % pr;
                for (int i = 0; i < D; i++) x[i] = (double)res2[src * D + i] + br[src * D + i];
                if (ln) ref_ln_row(&ref[(size_t)r * D], x.data(), w.data(), b.data(), D, eps);
                else std::copy(x.begin(), x.end(), ref.begin() + (size_t)r * D);
            }
            snprintf(name, sizeof name, "final_layernorm %s D=%d", what, D);
            gh_check(name, gh_down(d, ref.size()), ref, tol, tol);
            cudaFree(d);
        };
        check_final(per, true, 1e-5, "prefix rows (fp16 res)");
        check_final(per, false, 1e-6, "w=NULL (copy)");
        check_final(T, true, 1e-5, "all rows (fp16 res)");   /* the mean-pooling path: per = T */
        /* FP32 rows in (fc_norm after mean pooling: per = T = 1), no branch */
        std::vector<float> p32((size_t)Bq * D);
        gh_fill(p32, 2.f, 0.3f);
        float *dp32 = gh_up(p32), *dpo = gh_dev<float>((size_t)Bq * D);
        final_layernorm(dpo, dp32, nullptr, dw, db, Bq, 1, 1, D, eps, 0);
        GH_SYNC();
        std::vector<double> xp(D), rp((size_t)Bq * D);
        for (int r = 0; r < Bq; r++) {
            for (int i = 0; i < D; i++) xp[i] = p32[(size_t)r * D + i];
            ref_ln_row(&rp[(size_t)r * D], xp.data(), w.data(), b.data(), D, eps);
        }
        snprintf(name, sizeof name, "final_layernorm fp32 rows (fc_norm) D=%d", D);
        gh_check(name, gh_down(dpo, rp.size()), rp, 1e-5, 1e-5);
        /* mean pooling over tokens [npf, T) of FP32 rows */
        std::vector<float> rows((size_t)Bq * T * D);
        gh_fill(rows, 2.f);
        float *drows = gh_up(rows), *dmp = gh_dev<float>((size_t)Bq * D);
        mean_pool(dmp, drows, Bq, T, 1, D, 0, 0);
        GH_SYNC();
        std::vector<double> rm((size_t)Bq * D, 0);
        for (int bb = 0; bb < Bq; bb++)
            for (int t = 1; t < T; t++)
                for (int i = 0; i < D; i++) rm[(size_t)bb * D + i] += rows[((size_t)bb * T + t) * D + i] / (double)(T - 1);
        snprintf(name, sizeof name, "mean_pool D=%d", D);
        gh_check(name, gh_down(dmp, rm.size()), rm, 1e-5, 1e-5);
        cudaFree(dres2); cudaFree(dp32); cudaFree(dpo);
        cudaFree(drows); cudaFree(dmp);
    }
    cudaFree(dres); cudaFree(dw); cudaFree(db); cudaFree(dbr); cudaFree(dout);
}

/* mean_pool over tokens [npf, T) of FP32 rows (B, T, D), against float64: out (B, D), or with
 * with_cls ([class token; mean], DINOv2's head) (B, 2D) = [row 0; mean], the CLS half copied
 * exactly.  The output is poisoned first: every element must be written. */
static void test_mean_pool(int B, int T, int npf, int D, bool with_cls) {
    char name[128];
    const int F = with_cls ? 2 * D : D;
    std::vector<float> x((size_t)B * T * D);
    gh_fill(x, 2.f, 0.25f);
    float *dx = gh_up(x), *dout = gh_dev<float>((size_t)B * F);
    GH_CUDA(cudaMemset(dout, 0xFF, sizeof(float) * B * F));   /* NaN */
    mean_pool(dout, dx, B, T, npf, D, with_cls, 0);
    GH_SYNC();
    std::vector<double> ref = ref_mean_pool(x, B, T, npf, D, with_cls);
    std::vector<float> got = gh_down(dout, ref.size());
    /* FP32 sums of T - npf values of magnitude <= 2.25 */
    snprintf(name, sizeof name, "mean_pool%s B=%d T=%d npf=%d D=%d", with_cls ? " [cls; mean]" : "", B, T, npf, D);
    gh_check(name, got, ref, 1e-5, 1e-5);
    if (with_cls) {
        std::vector<float> gc;
        std::vector<double> rc;
        for (int b = 0; b < B; b++)
            for (int d = 0; d < D; d++) {
                gc.push_back(got[(size_t)b * F + d]);
                rc.push_back(ref[(size_t)b * F + d]);
            }
        snprintf(name, sizeof name, "mean_pool [cls; mean] B=%d T=%d D=%d: class token rows exact", B, T, D);
        gh_check(name, gc, rc, 0, 0);
    }
    cudaFree(dx); cudaFree(dout);
}

/* the WMMA kernel with another warp count (kernels/dev/attention.cu's v3 = 8 warps, v4 = 2) */
template <int W>
static void launch_wmma_warps(__half *o, float *a, float *c, const __half *qkv, int B, int T, int H, int dh) {
    GH_CUDA(cudaFuncSetAttribute(attention_wmma_kernel<W>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)g_optin));
    dim3 grid(vk_cdiv(T, 16 * W), H, B);
    attention_wmma_kernel<W><<<grid, 32 * W, attention_wmma_smem(T, dh, W)>>>(
        o, a, c, qkv, T, H, dh, 1.f / sqrtf((float)dh), 1.f / (float)H);
}

/* force_naive: pass a shared-memory limit of 0 so attention() takes the fallback;
 * mma: the flash-style kernel (attention_mma.cuh, dh 64 only), its work split planned for
 *   mma_target blocks (1: one block per head, warps taking several query tiles in turn), kc keys
 *   per online-softmax step, qt 16-row query tiles per warp (attention_mma's qt: 2 only where
 *   B * H >= mma_target; -2: attention_mma_kernel<64, kc, true, 2> launched directly with
 *   attention_mma_plan(..., 2), split heads included);
 * warps: the WMMA kernel launched directly with 2 or 8 warps instead of attention()'s 4 */
/* attention_mma with q_rows (the engine's last layer of a CLS-pooled model): rows < q_rows and
 * the CLS map as the reference; the rows of tiles past them untouched (the restriction is real) */
static void test_attention_prefix(int B, int T, int H, int q_rows, int kc) {
    const int dh = 64, D = H * dh;
    std::vector<float> qkv((size_t)B * T * 3 * D);
    gh_fill(qkv, 1.f);
    gh_round_half(qkv);
    __half *dqkv = gh_up_half(qkv), *dout = gh_dev<__half>((size_t)B * T * D);
    float *dcls = gh_dev<float>((size_t)B * T);
    GH_CUDA(cudaMemset(dout, 0xFF, sizeof(__half) * B * T * D));   /* FP16 NaN everywhere */
    GH_CUDA(cudaMemset(dcls, 0, sizeof(float) * B * T));
    const bool ran = attention_mma(dout, nullptr, dcls, dqkv, B, T, H, dh, g_optin, 0,
                                   VK_MMA_TARGET_BLOCKS, kc, VK_MMA_QT_DEFAULT, q_rows);
    GH_SYNC();
    std::vector<double> rout, ravg;
    ref_attention(rout, ravg, qkv, B, T, H, dh);
    std::vector<float> got = gh_down_half(dout, rout.size());
    std::vector<float> g1;
    std::vector<double> r1, rcls((size_t)B * T);
    size_t touched = 0;
    const int computed = vk_cdiv(q_rows, 16) * 16;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                const size_t i = ((size_t)b * T + t) * D + d;
                if (t < q_rows) { g1.push_back(got[i]); r1.push_back(rout[i]); }
                else if (t >= computed && got[i] == got[i]) touched++;   /* not NaN: written */
            }
        for (int j = 0; j < T; j++) rcls[(size_t)b * T + j] = ravg[(size_t)b * T * T + j];
    }
    char name[160];
    snprintf(name, sizeof name, "attention[mma kc%d q_rows %d] out rows < %d B=%d T=%d H=%d", kc, q_rows,
             q_rows, B, T, H);
    if (!ran) gh_result(false, "%s: not launched", name);
    gh_check(name, g1, r1, 2e-3, 5e-3);
    snprintf(name, sizeof name, "attention[mma kc%d q_rows %d] cls row B=%d T=%d", kc, q_rows, B, T);
    gh_check(name, gh_down(dcls, rcls.size()), rcls, 1e-6, 1e-4);
    gh_result(touched == 0, "attention[mma kc%d q_rows %d]: rows from %d on left untouched (%zu written)",
              kc, q_rows, computed, touched);
    cudaFree(dqkv); cudaFree(dout); cudaFree(dcls);
}

/* attention_mma with a quantized output (qo: proj's INT8 / FP8 input, the engine's int8 / fp8
 * precisions) against (1) the same launch's FP16 output quantized on the host (the kernel
 * quantizes the FP32 value that FP16 rounds: at most one step apart, and only where FP16's
 * 2^-11 relative rounding crosses a step boundary: INT8's step is amax/127, so at most
 * 127 * 2^-11 = 6.2% of the largest values, fewer below; at most 8% allowed) and (2) the float64 reference: q between the quantizations of ref -+ the FP16
 * attention tests' tolerance (2e-3 + 5e-3 |ref|; the quantizer is monotonic);
 * the FP16 out is left untouched (NaN-filled) */
static void test_attention_quant(int B, int T, int H, int kc, int qt, int qtype) {
    const int dh = 64, D = H * dh;
    const size_t n = (size_t)B * T * D;
    std::vector<float> qkv((size_t)B * T * 3 * D);
    gh_fill(qkv, 1.f);
    gh_round_half(qkv);
    __half *dqkv = gh_up_half(qkv), *dout = gh_dev<__half>(n), *dnan = gh_dev<__half>(n);
    uint8_t *dq = gh_dev<uint8_t>(n);
    std::vector<double> rout, ravg;
    ref_attention(rout, ravg, qkv, B, T, H, dh);
    double amax = 0;
    for (double v : rout) amax = fabs(v) > amax ? fabs(v) : amax;
    const float inv = (float)((qtype == VK_Q_E4M3 ? 448.0 : 127.0) / amax);
    GH_CUDA(cudaMemset(dnan, 0xFF, sizeof(__half) * n));
    bool ran = true;
    if (qt == -2) {   /* QT 2 launched directly, split heads included (as test_attention's -2) */
        const vk_mma_plan p = attention_mma_plan(B, T, H, VK_MMA_TARGET_BLOCKS, 2);
        vk_attention_mma_dispatch(p, kc, 2, dout, nullptr, nullptr, dqkv, B, T, H, dh, 0);
        vk_attention_mma_dispatch(p, kc, 2, dnan, nullptr, nullptr, dqkv, B, T, H, dh, 0, vk_qout{dq, inv, qtype});
    } else {
        ran = attention_mma(dout, nullptr, nullptr, dqkv, B, T, H, dh, g_optin, 0, VK_MMA_TARGET_BLOCKS, kc, qt) &&
              attention_mma(dnan, nullptr, nullptr, dqkv, B, T, H, dh, g_optin, 0, VK_MMA_TARGET_BLOCKS, kc, qt, 0,
                            vk_qout{dq, inv, qtype});
    }
    GH_SYNC();
    std::vector<float> h = gh_down_half(dout, n), nanout = gh_down_half(dnan, n);
    std::vector<uint8_t> q(n);
    GH_CUDA(cudaMemcpy(q.data(), dq, n, cudaMemcpyDeviceToHost));
    auto quant = [&](float v) { return qtype == VK_Q_E4M3 ? ref_e4m3(v * inv) : (uint8_t)(int8_t)vit_i8_quant1(v, inv); };
    auto value = [&](uint8_t c) { return qtype == VK_Q_E4M3 ? vk_e4m3_to_f32(c) : (float)(int8_t)c; };
    auto steps = [&](uint8_t a, uint8_t b) {
        if (qtype == VK_Q_INT8) return abs((int)(int8_t)a - (int)(int8_t)b);
        return (a & 0x80) == (b & 0x80) ? abs((int)(a & 0x7f) - (int)(b & 0x7f)) : abs((int)(a & 0x7f) + (int)(b & 0x7f));
    };
    size_t far16 = 0, off16 = 0, far64 = 0, written = 0;
    for (size_t i = 0; i < n; i++) {
        const int s16 = steps(q[i], quant(h[i]));
        const double tol = 2e-3 + 5e-3 * fabs(rout[i]);
        const float v = value(q[i]), lo = value(quant((float)(rout[i] - tol))), hi = value(quant((float)(rout[i] + tol)));
        far16 += s16 > 1; off16 += s16 == 1; far64 += !(lo <= v && v <= hi);
        written += nanout[i] == nanout[i];
    }
    char name[160];
    snprintf(name, sizeof name, "attention[mma kc%d qt%d] -> %s B=%d T=%d H=%d", kc, qt,
             qtype == VK_Q_E4M3 ? "e4m3" : "int8", B, T, H);
    gh_result(ran && far16 == 0 && off16 * 100 <= 8 * n, "%s: vs its fp16 output quantized (%zu one step apart, "
              "%zu further)", name, off16, far16);
    gh_result(ran && far64 == 0, "%s: vs the float64 reference quantized, within the fp16 tolerance (%zu outside)", name, far64);
    gh_result(written == 0, "%s: the fp16 output untouched (%zu written)", name, written);
    cudaFree(dqkv); cudaFree(dout); cudaFree(dnan); cudaFree(dq);
}

static void test_attention(int B, int T, int H, int dh, bool force_naive, float qscale, bool mma = false,
                           int warps = 0, int mma_target = VK_MMA_TARGET_BLOCKS, int kc = VK_MMA_KC_DEFAULT,
                           int qt = VK_MMA_QT_DEFAULT) {
    char name[160], mma_path[32];
    const int D = H * dh;
    size_t optin = force_naive ? 0 : g_optin;
    snprintf(mma_path, sizeof mma_path, "mma kc%d%s", kc,
             qt == -2 ? " qt2 split" : qt == 2 && B * H >= mma_target ? " qt2" : "");
    const char *path = mma ? mma_path : warps == 2 ? "wmma<2>" : warps == 8 ? "wmma<8>"
                     : attention_uses_wmma(T, dh, optin) ? "wmma" : "naive";
    if (warps && attention_wmma_smem(T, dh, warps) > g_optin) {  /* 8 warps: 224 KB, not on sm_80 */
        printf("SKIP attention[%s] T=%d dh=%d: needs %zu bytes of shared memory, the device has %zu\n", path, T, dh,
               attention_wmma_smem(T, dh, warps), g_optin);
        gh_skipped++;
        return;
    }
    std::vector<float> qkv((size_t)B * T * 3 * D);
    gh_fill(qkv, qscale);
    gh_round_half(qkv);
    __half *dqkv = gh_up_half(qkv), *dout = gh_dev<__half>((size_t)B * T * D);
    float *davg = gh_dev<float>((size_t)B * T * T), *dcls = gh_dev<float>((size_t)B * T);
    auto launch = [&](__half *o, float *a, float *c) {
        if (mma && qt == -2) {
            vk_attention_mma_dispatch(attention_mma_plan(B, T, H, mma_target, 2), kc, 2, o, a, c, dqkv,
                                      B, T, H, dh, 0);
        } else if (mma) {
            if (!attention_mma(o, a, c, dqkv, B, T, H, dh, optin, 0, mma_target, kc, qt)) path = "mma (did not fit: none)";
        } else if (warps == 2) {
            launch_wmma_warps<2>(o, a, c, dqkv, B, T, H, dh);
        } else if (warps == 8) {
            launch_wmma_warps<8>(o, a, c, dqkv, B, T, H, dh);
        } else {
            attention(o, a, c, dqkv, B, T, H, dh, optin, 0);
        }
    };
    GH_CUDA(cudaMemset(davg, 0, sizeof(float) * B * T * T));
    GH_CUDA(cudaMemset(dcls, 0, sizeof(float) * B * T));
    launch(dout, davg, dcls);
    GH_SYNC();
    std::vector<double> rout, ravg;
    ref_attention(rout, ravg, qkv, B, T, H, dh);
    std::vector<double> rcls((size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < T; j++) rcls[(size_t)b * T + j] = ravg[(size_t)b * T * T + j];
    /* out: P rounded to fp16 (rel 2^-11) before P.V, out rounded to fp16 */
    snprintf(name, sizeof name, "attention[%s] out B=%d T=%d H=%d dh=%d", path, B, T, H, dh);
    gh_check(name, gh_down_half(dout, rout.size()), rout, 2e-3, 5e-3);
    snprintf(name, sizeof name, "attention[%s] head-avg probs B=%d T=%d H=%d dh=%d", path, B, T, H, dh);
    gh_check(name, gh_down(davg, ravg.size()), ravg, 1e-6, 1e-4);
    snprintf(name, sizeof name, "attention[%s] cls row B=%d T=%d", path, B, T);
    gh_check(name, gh_down(dcls, rcls.size()), rcls, 1e-6, 1e-4);
    /* without maps: same output, and the map pointers are untouched (NULL) */
    __half *dout2 = gh_dev<__half>((size_t)B * T * D);
    launch(dout2, nullptr, nullptr);
    GH_SYNC();
    snprintf(name, sizeof name, "attention[%s] out without maps T=%d dh=%d", path, T, dh);
    gh_check(name, gh_down_half(dout2, rout.size()), rout, 2e-3, 5e-3);
    cudaFree(dqkv); cudaFree(dout); cudaFree(dout2); cudaFree(davg); cudaFree(dcls);
}

static void test_gelu(void) {
    /* the two GELU forms, on the CPU: how far apart are they? */
    double worst = 0, at = 0;
    for (double x = -10; x <= 10; x += 1e-4) {
        double d = fabs(ref_gelu_erf(x) - ref_gelu_tanh(x));
        if (d > worst) { worst = d; at = x; }
    }
    printf("# gelu: max |tanh form - erf form| = %.3g at x = %.3f\n", worst, at);
    gh_result(worst < 1e-3 && worst > 1e-5, "gelu forms differ by %.3g (expected ~5e-4)", worst);

    const long long n = 100001; /* odd: the scalar tail runs */
    std::vector<float> x(n);
    gh_fill(x, 6.f);
    gh_round_half(x);
    __half *dx = gh_up_half(x);
    gelu_erf_inplace(dx, n, 0);
    GH_SYNC();
    std::vector<double> r(n);
    for (long long i = 0; i < n; i++) r[i] = ref_gelu_erf(x[i]);
    gh_check("gelu_erf_inplace (fp16)", gh_down_half(dx, n), r, 1e-3, 1e-3);
    cudaFree(dx);

    std::vector<float> y(1000);
    gh_fill(y, 4.f);
    float *dy = gh_up(y);
    tanh_inplace(dy, (long long)y.size(), 0);
    GH_SYNC();
    std::vector<double> ry(y.size());
    for (size_t i = 0; i < y.size(); i++) ry[i] = tanh((double)y[i]);
    gh_check("tanh_inplace", gh_down(dy, y.size()), ry, 1e-6, 1e-6);
    cudaFree(dy);
}

/* quantize_act on every FP16 value (all 65536 bit patterns: zeros, subnormals, infinities,
 * NaNs), bit-exact against the CPU engine's INT8 rounding (vit_i8_quant1) and the brute-force
 * E4M3 table (ref_e4m3); n = 65536 + 3 so the scalar tail runs too */
static void test_quantize(int type, float amax) {
    const long long n = 65536 + 3;
    std::vector<__half> hx(n);
    for (long long i = 0; i < n; i++) {
        const uint16_t b = (uint16_t)(i * 40503u);   /* odd multiplier: a permutation of 2^16 */
        memcpy((void *)&hx[i], &b, 2);
    }
    __half *dx = gh_dev<__half>(n);
    GH_CUDA(cudaMemcpy(dx, hx.data(), n * sizeof(__half), cudaMemcpyHostToDevice));
    uint8_t *dq = gh_dev<uint8_t>(n);
    const float inv = (type == VK_Q_E4M3 ? 448.f : 127.f) / amax;
    quantize_act(dq, dx, n, inv, type, 0);
    GH_SYNC();
    std::vector<uint8_t> q(n);
    GH_CUDA(cudaMemcpy(q.data(), dq, n, cudaMemcpyDeviceToHost));
    long long bad = 0, at = -1;
    for (long long i = 0; i < n; i++) {
        const float x = __half2float(hx[i]), v = x * inv;
        const uint8_t r = type == VK_Q_E4M3 ? ref_e4m3(v) : (uint8_t)(int8_t)vit_i8_quant1(x, inv);
        if (q[i] != r) { if (at < 0) at = i; bad++; }
    }
    gh_result(bad == 0, "quantize_act %s amax=%g: all %lld fp16 values bit-exact vs the CPU reference "
              "(%lld differ, first at %lld)", type == VK_Q_E4M3 ? "e4m3" : "int8", amax, n, bad, at);
    /* the host build of vk_e4m3 and its inverse: every code round-trips */
    int rt = 0;
    for (int c = 0; c < 256; c++)
        if ((c & 0x7f) != 0x7f) rt += vk_e4m3(vk_e4m3_to_f32((uint8_t)c)) == c;
    if (type == VK_Q_E4M3) gh_result(rt == 254, "vk_e4m3(vk_e4m3_to_f32(c)) == c for the 254 non-NaN codes (%d)", rt);
    cudaFree(dx); cudaFree(dq);
}

/* residual_layernorm_quant: the LayerNorm with its output quantized for the next INT8 / FP8 GEMM.
 * Reference: the float64 LayerNorm of the same FP16 stream, quantized by the CPU engine's INT8
 * rounding (vit_i8_quant1) or ref_e4m3.  The kernel quantizes its FP32 LN value, which differs
 * from the float64 one by a few ulp: a value that close to a rounding boundary may land one
 * step away (allowed on at most 1% of the elements), never more.  The stream res (and its
 * FP16 sum with the branch) must come out exactly as residual_layernorm's. */
static void test_layernorm_quant(int N, int D, int qtype, bool branch, float amax) {
    const float eps = 1e-6f, inv = (qtype == VK_Q_E4M3 ? 448.f : 127.f) / amax;
    std::vector<float> res((size_t)N * D), br((size_t)N * D), w(D), b(D);
    gh_fill(res, 3.f, 0.5f); gh_round_half(res); gh_fill(br, 1.f); gh_round_half(br);
    gh_fill(w, 0.5f, 1.f); gh_fill(b, 0.2f);
    float *dw = gh_up(w), *db = gh_up(b);
    __half *dres = gh_up_half(res), *dbr = branch ? gh_up_half(br) : nullptr;
    uint8_t *dq = gh_dev<uint8_t>((size_t)N * D);
    residual_layernorm_quant(vk_qout{dq, inv, qtype}, dres, dbr, dw, db, N, D, eps, 0);
    GH_SYNC();
    std::vector<double> x((size_t)N * D), ln((size_t)N * D);
    for (size_t i = 0; i < x.size(); i++) x[i] = branch ? fp16_add(res[i], br[i]) : res[i];
    for (int r = 0; r < N; r++) ref_ln_row(&ln[(size_t)r * D], &x[(size_t)r * D], w.data(), b.data(), D, eps);
    std::vector<uint8_t> q((size_t)N * D);
    GH_CUDA(cudaMemcpy(q.data(), dq, q.size(), cudaMemcpyDeviceToHost));
    size_t bad = 0, off1 = 0, sat = 0;
    for (size_t i = 0; i < q.size(); i++) {
        const float v = (float)ln[i];
        const int r = qtype == VK_Q_E4M3 ? ref_e4m3(v * inv) : (uint8_t)(int8_t)vit_i8_quant1(v, inv);
        sat += qtype == VK_Q_E4M3 ? (r & 0x7f) == 0x7e : abs((int)(int8_t)r) == 127;
        if (q[i] == r) continue;
        const bool step = qtype == VK_Q_E4M3 ? abs((int)q[i] - r) == 1 && (q[i] & 0x80) == (r & 0x80)
                                             : abs((int)(int8_t)q[i] - (int)(int8_t)r) == 1;
        if (step) off1++; else bad++;
    }
    char name[128];
    snprintf(name, sizeof name, "residual_layernorm_quant %s N=%d D=%d%s amax=%g", qtype == VK_Q_E4M3 ? "e4m3" : "int8",
             N, D, branch ? " +branch" : "", amax);
    gh_result(bad == 0 && off1 * 100 <= q.size(), "%s: vs float64 LN quantized by the CPU rounding (%zu differ, "
              "%zu one step apart, %zu saturated)", name, bad, off1, sat);
    snprintf(name, sizeof name, "residual_layernorm_quant N=%d D=%d%s: the stream as residual_layernorm's", N, D,
             branch ? " +branch" : "");
    gh_check(name, gh_down_half(dres, x.size()), x, 0, 0);
    cudaFree(dw); cudaFree(db); cudaFree(dres); cudaFree(dq);
    if (dbr) cudaFree(dbr);
}

/* dequant_epilogue, each mode, against the same float operations on the host (volatile: no
 * contraction), bit-exact except GELU's erff (host libm vs device): there the requantized
 * values may differ by one step, on a few elements */
template <typename TA>
static void test_dequant(int rows, int N, int mode, int qtype) {
    const size_t n = (size_t)rows * N;
    std::vector<TA> acc(n);
    for (auto &a : acc) a = (TA)(gh_frand() * (sizeof(TA) == 4 && (TA)0.5 == 0 ? 1048576.f : 3000.f));
    std::vector<float> sw(N), bias(N), res(n);
    for (auto &w : sw) w = 1e-3f * (1.5f + gh_frand());
    gh_fill(bias, 0.5f); gh_round_half(bias);
    gh_fill(res, 4.f); gh_round_half(res);
    const float sa = 0.0213f, qinv = (qtype == VK_Q_E4M3 ? 448.f : 127.f) / 6.f;
    TA *dacc = gh_dev<TA>(n);
    GH_CUDA(cudaMemcpy(dacc, acc.data(), n * sizeof(TA), cudaMemcpyHostToDevice));
    float *dsw = gh_up(sw);
    __half *db = gh_up_half(bias), *dout = mode == VK_DQ_RESIDUAL ? gh_up_half(res) : gh_dev<__half>(n);
    uint8_t *dq = gh_dev<uint8_t>(n);
    dequant_epilogue<TA>(dout, dq, dacc, dsw, sa, db, rows, N, mode, qinv, qtype, 0);
    GH_SYNC();
    std::vector<float> out = gh_down_half(dout, n);
    std::vector<uint8_t> q(n);
    GH_CUDA(cudaMemcpy(q.data(), dq, n, cudaMemcpyDeviceToHost));
    size_t bad = 0, off1 = 0;
    for (size_t i = 0; i < n; i++) {
        const int c = (int)(i % N);
        volatile float s = sa * sw[c];
        volatile float p = (float)acc[i] * s;
        volatile float v = p + bias[c];
        if (mode == VK_DQ_GELU_QUANT) {
            const float g = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
            const float gv = g * qinv;
            const int r = qtype == VK_Q_E4M3 ? ref_e4m3(gv) : (uint8_t)(int8_t)vit_i8_quant1(g, qinv);
            if (q[i] != r) {
                const bool step = qtype == VK_Q_E4M3 ? abs((int)q[i] - r) == 1 && (q[i] & 0x80) == (r & 0x80)
                                                     : abs((int)(int8_t)q[i] - (int)(int8_t)r) == 1;
                if (step) off1++; else bad++;
            }
        } else {
            volatile float y = mode == VK_DQ_RESIDUAL ? res[i] + v : (float)v;
            if (__half2float(__float2half(y)) != out[i] && !(out[i] != out[i] && y != y)) bad++;
        }
    }
    char name[128];
    snprintf(name, sizeof name, "dequant_epilogue<%s> %s %dx%d", sizeof(TA) == 4 && (TA)0.5 == 0 ? "int32" : "float",
             mode == VK_DQ_BIAS ? "bias" : mode == VK_DQ_RESIDUAL ? "bias+residual"
             : qtype == VK_Q_E4M3 ? "bias+gelu->e4m3" : "bias+gelu->int8", rows, N);
    gh_result(bad == 0 && off1 * 100 <= n, "%s: bit-exact vs the host's float ops (%zu differ; %zu one step "
              "apart after erff, at most 1%% allowed)", name, bad, off1);
    cudaFree(dacc); cudaFree(dsw); cudaFree(db); cudaFree(dout); cudaFree(dq);
}

#ifndef VITD_EMU
/* cuBLASLt GELU_BIAS epilogue vs the erf and tanh forms: which does it compute? */
static void test_cublaslt_gelu_epilogue(void) {
    const int M = 64, N = 256, K = 128;  /* Y (M,N) = X (M,K) W^T + b */
    std::vector<float> X((size_t)M * K), W((size_t)N * K), b(N);
    gh_fill(X, 1.f); gh_round_half(X); gh_fill(W, 0.3f); gh_round_half(W); gh_fill(b, 0.5f); gh_round_half(b);
    __half *dX = gh_up_half(X), *dW = gh_up_half(W), *db = gh_up_half(b), *dY = gh_dev<__half>((size_t)M * N);
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_GELU_BIAS;
    const void *bias = db;
    int ok = cublasLtCreate(&lt) == CUBLAS_STATUS_SUCCESS &&
             cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
             cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA) == 0 &&
             cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB) == 0 &&
             cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) == 0 &&
             cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) == 0 &&
             cublasLtMatrixLayoutCreate(&la, CUDA_R_16F, K, N, K) == 0 &&
             cublasLtMatrixLayoutCreate(&lb, CUDA_R_16F, K, M, K) == 0 &&
             cublasLtMatrixLayoutCreate(&lc, CUDA_R_16F, N, M, N) == 0;
    float alpha = 1, beta = 0;
    ok = ok && cublasLtMatmul(lt, op, &alpha, dW, la, dX, lb, &beta, dY, lc, dY, lc, nullptr, nullptr, 0, 0) ==
                   CUBLAS_STATUS_SUCCESS;
    GH_SYNC();
    gh_result(ok, "cublasLt GELU_BIAS fp16 matmul ran");
    if (!ok) return;
    std::vector<float> got = gh_down_half(dY, (size_t)M * N);
    std::vector<double> rerf((size_t)M * N), rtanh((size_t)M * N);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double a = b[n];
            for (int k = 0; k < K; k++) a += (double)X[(size_t)m * K + k] * W[(size_t)n * K + k];
            rerf[(size_t)m * N + n] = ref_gelu_erf(a);
            rtanh[(size_t)m * N + n] = ref_gelu_tanh(a);
        }
    double de = 0, dt = 0;
    for (size_t i = 0; i < got.size(); i++) {
        de = std::max(de, fabs(got[i] - rerf[i]));
        dt = std::max(dt, fabs(got[i] - rtanh[i]));
    }
    printf("# cublasLt GELU_BIAS epilogue: max diff vs erf form %.3g, vs tanh form %.3g -> %s\n", de, dt,
           dt < de ? "computes the tanh approximation" : "computes exact erf GELU (or indistinguishable)");
    gh_check("cublasLt GELU_BIAS within fp16 of exact GELU", got, rerf, 4e-3, 4e-3);
    cublasLtMatrixLayoutDestroy(la); cublasLtMatrixLayoutDestroy(lb); cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op); cublasLtDestroy(lt);
    cudaFree(dX); cudaFree(dW); cudaFree(db); cudaFree(dY);
}
#else
static void test_cublaslt_gelu_epilogue(void) {
    printf("SKIP cublasLt GELU_BIAS epilogue: cuBLASLt cannot be emulated (the GPU build checks it)\n");
    gh_skipped++;
}
#endif

static void test_rollout(int B, int T, int L, int npf) {
    char name[128];
    std::vector<std::vector<double>> As(L);
    float *dA = gh_dev<float>((size_t)B * T * T), *dR0 = gh_dev<float>((size_t)B * T * T),
          *dR1 = gh_dev<float>((size_t)B * T * T), *dout = gh_dev<float>((size_t)B * (T - npf));
    float *Rc = dR0, *Rn = dR1;
    for (int l = 0; l < L; l++) {
        std::vector<float> a((size_t)B * T * T);
        for (size_t r = 0; r < (size_t)B * T; r++) { /* row-stochastic, like softmax output */
            double s = 0;
            for (int j = 0; j < T; j++) { a[r * T + j] = 0.5f * (gh_frand() + 1.f) + 1e-3f; s += a[r * T + j]; }
            for (int j = 0; j < T; j++) a[r * T + j] = (float)(a[r * T + j] / s);
        }
        As[l].assign(a.begin(), a.end());
        GH_CUDA(cudaMemcpy(dA, a.data(), a.size() * sizeof(float), cudaMemcpyHostToDevice));
        rollout_prep(dA, B, T, 0);
        if (l == 0) GH_CUDA(cudaMemcpy(Rc, dA, a.size() * sizeof(float), cudaMemcpyDeviceToDevice));
        else { rollout_matmul(Rn, dA, Rc, B, T, 0); std::swap(Rc, Rn); }
        GH_SYNC();
    }
    rollout_extract(dout, Rc, B, T, npf, 0);
    GH_SYNC();
    std::vector<double> ref = ref_rollout(As, B, T, npf);
    snprintf(name, sizeof name, "rollout B=%d T=%d L=%d", B, T, L);
    gh_check(name, gh_down(dout, ref.size()), ref, 1e-7, 1e-4);
    cudaFree(dA); cudaFree(dR0); cudaFree(dR1); cudaFree(dout);
}

/* ties: logits rounded to a few levels, so the top k hold equal values (lower index first) */
static void test_softmax_topk(int B, int C, int k, bool ties = false) {
    char name[128];
    std::vector<float> x((size_t)B * C);
    gh_fill(x, 8.f);
    if (ties)
        for (auto &v : x) v = floorf(v / 4.f);
    float *dx = gh_up(x), *dp = gh_dev<float>(x.size()), *dv = gh_dev<float>((size_t)B * k);
    int *di = gh_dev<int>((size_t)B * k);
    softmax_topk(dp, di, dv, dx, B, C, k, 0);
    GH_SYNC();
    std::vector<double> rp(x.size()), rv((size_t)B * k);
    std::vector<int> ri((size_t)B * k), gi((size_t)B * k);
    for (int b = 0; b < B; b++) {
        const float *r = &x[(size_t)b * C];
        double m = *std::max_element(r, r + C), s = 0;
        for (int j = 0; j < C; j++) s += exp(r[j] - m);
        for (int j = 0; j < C; j++) rp[(size_t)b * C + j] = exp(r[j] - m) / s;
        std::vector<int> idx(C);
        for (int j = 0; j < C; j++) idx[j] = j;
        std::stable_sort(idx.begin(), idx.end(), [&](int p, int q) { return r[p] > r[q]; });
        for (int j = 0; j < k; j++) { ri[(size_t)b * k + j] = idx[j]; rv[(size_t)b * k + j] = rp[(size_t)b * C + idx[j]]; }
    }
    snprintf(name, sizeof name, "softmax B=%d C=%d", B, C);
    gh_check(name, gh_down(dp, rp.size()), rp, 1e-7, 1e-5);
    snprintf(name, sizeof name, "topk values k=%d", k);
    gh_check(name, gh_down(dv, rv.size()), rv, 1e-7, 1e-5);
    GH_CUDA(cudaMemcpy(gi.data(), di, gi.size() * sizeof(int), cudaMemcpyDeviceToHost));
    gh_result(gi == ri, "topk indices B=%d C=%d k=%d%s", B, C, k, ties ? " (ties: lower index first)" : "");
    cudaFree(dx); cudaFree(dp); cudaFree(dv); cudaFree(di);
}

/* ---- head training (linear_ce.cuh) against engine/train/train.c's arithmetic ----------------- */

static bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
    return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

static void test_optim_update(int adamw, int first, float wd, float mom) {
    const long long n = 1000;
    std::vector<float> p(n), g(n), m(n), v(n);
    gh_fill(p, 1.f); gh_fill(g, 0.1f); gh_fill(m, 0.05f); gh_fill(v, 0.01f, 0.011f);
    train_coeffs k;
    memset(&k, 0, sizeof k);
    k.adamw = adamw; k.first = first;
    k.decay = 0.9999f; k.b1 = 0.9f; k.b2 = 0.999f; k.c1 = 0.1f; k.c2 = 0.001f;
    k.step_size = 1e-3f / 0.271f; k.bc2_sqrt = 0.0447f; k.eps = 1e-8f;
    k.lr = 0.05f; k.wd = wd; k.mom = mom;
    float *dp = gh_up(p), *dg = gh_up(g), *dm = gh_up(m), *dv = gh_up(v);
    vk_launch_optim_update(dp, dg, dm, dv, n, k, 0);
    GH_SYNC();
    train_optim_update(&k, p.data(), g.data(), m.data(), v.data(), (size_t)n);  /* train.c's own */
    const bool ok = same_bits(gh_down(dp, n), p) && same_bits(gh_down(dm, n), m) && same_bits(gh_down(dv, n), v);
    gh_result(ok, "vk_optim_update %s (first=%d wd=%g mom=%g) bit-identical to train.c's train_optim_update (p, m, v)",
              adamw ? "AdamW" : "SGD", first, wd, mom);
    cudaFree(dp); cudaFree(dg); cudaFree(dm); cudaFree(dv);
}

static void test_linear_ce(int B, int C, int D, int N) {
    char name[160];
    /* gather */
    std::vector<float> x((size_t)N * D);
    gh_fill(x, 1.f);
    std::vector<int32_t> y(N), idx(B);
    for (int i = 0; i < N; i++) y[i] = (int32_t)((gh_frand() + 1.f) * 0.5f * C) % C;
    for (int i = 0; i < B; i++) idx[i] = (int32_t)((gh_frand() + 1.f) * 0.5f * N) % N;
    float *dx = gh_up(x), *dxb = gh_dev<float>((size_t)B * D);
    int32_t *dy = gh_dev<int32_t>(N), *didx = gh_dev<int32_t>(B), *dyb = gh_dev<int32_t>(B);
    GH_CUDA(cudaMemcpy(dy, y.data(), N * 4, cudaMemcpyHostToDevice));
    GH_CUDA(cudaMemcpy(didx, idx.data(), B * 4, cudaMemcpyHostToDevice));
    vk_launch_gather_rows(dxb, dyb, dx, dy, didx, B, D, 0);
    GH_SYNC();
    std::vector<float> xb((size_t)B * D), gxb = gh_down(dxb, (size_t)B * D);
    std::vector<int32_t> yb(B), gyb(B);
    for (int i = 0; i < B; i++) {
        memcpy(&xb[(size_t)i * D], &x[(size_t)idx[i] * D], D * sizeof(float));
        yb[i] = y[idx[i]];
    }
    GH_CUDA(cudaMemcpy(gyb.data(), dyb, B * 4, cudaMemcpyDeviceToHost));
    gh_result(same_bits(gxb, xb) && gyb == yb, "vk_gather_rows B=%d D=%d exact", B, D);

    /* softmax + cross-entropy on logits (B, C) = xb w^T (from cuBLAS on the device; any values here) */
    std::vector<float> lg((size_t)B * C), bias(C);
    gh_fill(lg, 4.f); gh_fill(bias, 1.f);
    float *dl = gh_up(lg), *db = gh_up(bias), *dloss = gh_dev<float>(B);
    int *dhits = gh_dev<int>(1);
    GH_CUDA(cudaMemset(dhits, 0, sizeof(int)));
    vk_launch_softmax_ce(dl, db, dyb, B, C, dloss, dhits, 1, 0);
    GH_SYNC();
    /* reference: train.c batch_ce per row, in double */
    std::vector<double> rloss(B), rdl((size_t)B * C);
    int rhits = 0;
    for (int i = 0; i < B; i++) {
        std::vector<float> z(C);
        for (int c = 0; c < C; c++) z[c] = lg[(size_t)i * C + c] + bias[c];
        int arg = 0;
        for (int c = 1; c < C; c++) if (z[c] > z[arg]) arg = c;
        rhits += arg == yb[i];
        double s = 0;
        for (int c = 0; c < C; c++) s += exp((double)z[c] - z[arg]);
        rloss[i] = log(s) - ((double)z[yb[i]] - z[arg]);
        for (int c = 0; c < C; c++) rdl[(size_t)i * C + c] = exp((double)z[c] - z[arg]) / s / B - (c == yb[i] ? 1.0 / B : 0.0);
    }
    int hits = -1;
    GH_CUDA(cudaMemcpy(&hits, dhits, sizeof(int), cudaMemcpyDeviceToHost));
    snprintf(name, sizeof name, "vk_softmax_ce row loss B=%d C=%d", B, C);
    gh_check(name, gh_down(dloss, B), rloss, 1e-5, 1e-5);
    snprintf(name, sizeof name, "vk_softmax_ce dlogits = (softmax - onehot) / B, C=%d", C);
    gh_check(name, gh_down(dl, (size_t)B * C), rdl, 1e-8, 1e-5);
    gh_result(hits == rhits, "vk_softmax_ce argmax hits %d (reference %d)", hits, rhits);

    /* loss accumulation in double, in row order: exact */
    std::vector<float> gl = gh_down(dloss, B);
    double *dacc = gh_dev<double>(1);
    const double acc0 = 0.25;
    GH_CUDA(cudaMemcpy(dacc, &acc0, sizeof acc0, cudaMemcpyHostToDevice));
    vk_launch_loss_accumulate(dacc, dloss, B, 0);
    GH_SYNC();
    double acc = 0, racc = acc0;
    for (int i = 0; i < B; i++) racc += (double)gl[i];
    GH_CUDA(cudaMemcpy(&acc, dacc, sizeof acc, cudaMemcpyDeviceToHost));
    gh_result(acc == racc, "vk_loss_accumulate: %.17g == %.17g (row order, double)", acc, racc);

    /* bias gradient: column sums in row order, bit-identical to batch_ce's db loop */
    std::vector<float> gdl = gh_down(dl, (size_t)B * C), rdb(C, 0.f);
    for (int i = 0; i < B; i++)
        for (int c = 0; c < C; c++) rdb[c] += gdl[(size_t)i * C + c];
    float *ddb = gh_dev<float>(C);
    vk_launch_col_sums(ddb, dl, B, C, 0);
    GH_SYNC();
    gh_result(same_bits(gh_down(ddb, C), rdb), "vk_col_sums C=%d bit-identical to train.c's db loop", C);

    /* no gradient, no loss pointer: logits + bias only, hits counted */
    std::vector<float> lg2((size_t)B * C);
    gh_fill(lg2, 4.f);
    float *dl2 = gh_up(lg2);
    GH_CUDA(cudaMemset(dhits, 0, sizeof(int)));
    vk_launch_softmax_ce(dl2, db, dyb, B, C, nullptr, dhits, 0, 0);
    GH_SYNC();
    std::vector<float> rz((size_t)B * C);
    int rh2 = 0;
    for (int i = 0; i < B; i++) {
        int arg = 0;
        for (int c = 0; c < C; c++) {
            rz[(size_t)i * C + c] = lg2[(size_t)i * C + c] + bias[c];
            if (rz[(size_t)i * C + c] > rz[(size_t)i * C + arg]) arg = c;
        }
        rh2 += arg == yb[i];
    }
    GH_CUDA(cudaMemcpy(&hits, dhits, sizeof(int), cudaMemcpyDeviceToHost));
    gh_result(same_bits(gh_down(dl2, (size_t)B * C), rz) && hits == rh2,
              "vk_softmax_ce grad=0: logits + bias exact, hits %d (reference %d)", hits, rh2);
    cudaFree(dx); cudaFree(dxb); cudaFree(dy); cudaFree(didx); cudaFree(dyb); cudaFree(dl); cudaFree(db);
    cudaFree(dloss); cudaFree(dhits); cudaFree(dacc); cudaFree(ddb); cudaFree(dl2);
}

#if defined(EMU_RACE)
/* tests/emu/race_self.cpp (linked into test_emu_race only): the race check's own tests */
void emu_race_self_test(void (*report)(int ok, const char *fmt, ...));
#endif

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("SKIP no CUDA device\n0 passed, 0 failed, 1 skipped\n");
        return 0;
    }
    cudaDeviceProp p;
    GH_CUDA(cudaGetDeviceProperties(&p, 0));
    printf("# device %s sm_%d%d, %d SMs, opt-in smem %zu\n", p.name, p.major, p.minor,
           p.multiProcessorCount, p.sharedMemPerBlockOptin);
    g_optin = p.sharedMemPerBlockOptin;
    GH_CUDA(attention_prepare(g_optin));
    GH_CUDA(attention_mma_prepare(g_optin));
    gh_seed();
#ifdef VITD_EMU
    emu::set_seed(gh_rng);
#endif
#if defined(EMU_RACE)
    printf("# race check on: shared-memory accesses between barriers are checked (no ASan in this build)\n");
    emu_race_self_test(gh_result);
#endif

    test_im2col_embed(40, 40, 8);     /* square, 5x5 patches */
    test_im2col_embed(24, 40, 8);     /* non-square: 3x5 */
    test_im2col_embed(42, 28, 14);    /* non-square, patch 14 (the rect fixtures, transposed): 3x2 */
    test_prefix_rows(3, 197, 1, 768, 0);   /* CLS pooling, 16-byte chunks */
    test_prefix_rows(4, 18, 2, 32, 0);     /* DeiT distilled, the fixtures' D */
    test_prefix_rows(2, 9, 2, 20, 0);      /* D % 8 != 0: single halves */
    test_prefix_rows(2, 9, 1, 24, 1);      /* destination not 16-byte aligned: single halves */
    test_layernorms(40, 768);   /* the register-resident kernels, 3 chunks of 8 a lane */
    test_layernorms(11, 192);   /* ... 1 chunk (ViT-Ti) */
    test_layernorms(7, 32);     /* ... 4 of the 32 lanes hold a chunk (the fixtures' D) */
    test_layernorms(9, 1280);   /* ... 5 chunks in the 6-wide instance (ViT-H) */
    test_layernorms(35, 100);   /* D % 8 != 0: the three-pass kernel, __half2 pairs */
    test_layernorms(21, 75);    /* D odd: single halves (residual_layernorm_kernel<1>) */
    test_mean_pool(GPU_EMU(4, 2), 257, 1, 768, true);   /* DINOv2 ViT-B/14 at 224: [cls; mean] */
    test_mean_pool(3, 11, 5, 32, true);      /* 4 registers after the class token (the fixtures') */
    test_mean_pool(2, 15, 1, 20, true);      /* 2x7 non-square grid, D % 8 != 0 */
    test_mean_pool(3, 50, 2, 48, false);     /* mean only, two prefix tokens skipped */
    test_attention(GPU_EMU(2, 1), 197, 12, 64, false, 1.f);   /* ViT-B/16: WMMA path */
    test_attention(GPU_EMU(2, 1), 197, 12, 64, true, 1.f);    /* same through the fallback */
    test_attention(3, 50, 4, 32, false, 2.f);     /* T not a multiple of 16, peaky softmax */
    test_attention(1, 17, 4, 8, false, 1.f);      /* dh 8: the fixtures' shape, fallback */
    test_attention(1, 577, GPU_EMU(16, 1), 64, false, 1.f);  /* 384 px: past the WMMA smem limit -> fallback */
    test_attention(2, 17, 2, 64, false, 1.f);     /* dh > Tp: O gets its own buffer instead of S */
    test_attention(1, 5, 3, 32, false, 2.f);      /* T < 16: one tile, 11 padded keys */
    test_attention(2, 65, 2, 80, false, 1.f);     /* ViT-H's dh 80 */
    test_attention(1, 197, 12, 64, false, 1.f, false, 8);  /* lab v3: 8 warps, 224 KB smem */
    test_attention(2, 50, 3, 32, false, 1.f, false, 2);    /* lab v4: 2 warps */
    /* the engine's kernel for dh 64, with 16, 32 and 64 keys per online-softmax step (T = 197:
     * KC 32 and 64 skip the last chunk's 16-key groups past T) */
    test_attention_prefix(GPU_EMU(3, 2), 197, GPU_EMU(12, 3), 1, 64);   /* CLS only */
    test_attention_prefix(2, 50, 2, 2, 16);                               /* CLS + dist */
    test_attention_prefix(1, 197, 2, 20, 32);                             /* two tiles */
    for (int kc : {16, 32, 64}) {
        test_attention(GPU_EMU(2, 1), 197, 12, 64, false, 1.f, true, 0, VK_MMA_TARGET_BLOCKS, kc);
        test_attention(GPU_EMU(24, 2), 197, GPU_EMU(12, 2), 64, false, 1.f, true, 0,
                       GPU_EMU(VK_MMA_TARGET_BLOCKS, 1), kc);  /* one block per head: 7 warps, 2 rounds */
        test_attention(1, 577, 1, 64, false, 1.f, true, 0, 1, kc);   /* one block: 8 warps, 5 rounds */
        test_attention(3, 50, 4, 64, false, 2.f, true, 0, VK_MMA_TARGET_BLOCKS, kc);
        test_attention(1, 17, 2, 64, false, 1.f, true, 0, VK_MMA_TARGET_BLOCKS, kc);
        test_attention(2, 5, 3, 64, false, 2.f, true, 0, VK_MMA_TARGET_BLOCKS, kc);  /* T < 16: one tail chunk */
        /* 37 16-key chunks of online softmax (KC 64: 9 full chunks and a one-group tail) */
        test_attention(1, 577, GPU_EMU(16, 1), 64, false, 1.f, true, 0, VK_MMA_TARGET_BLOCKS, kc);
    }
    /* two 16-row query tiles per warp (QT 2; FAST): through attention_mma with one block per head
     * (its only QT 2 plan), and launched directly with heads split over blocks (qt -2).  T = 197:
     * 7 units of 2 tiles, the last one a single tile (rows 192..196); 577: 19 units, 4 warps,
     * 5 rounds, the last a single tile; 50: 2 units, the second with 2 of its 32 rows below T;
     * 17: one unit, its second tile 1 row; 5: one single-tile unit */
    for (int kc : {16, 32, 64}) {
        test_attention(GPU_EMU(2, 1), 197, 12, 64, false, 1.f, true, 0, VK_MMA_TARGET_BLOCKS, kc, -2);
        test_attention(GPU_EMU(24, 2), 197, GPU_EMU(12, 2), 64, false, 1.f, true, 0, 1, kc, 2);  /* 4 warps, 2 rounds */
        test_attention(1, 577, 1, 64, false, 1.f, true, 0, 1, kc, 2);
        test_attention(3, 50, 4, 64, false, 2.f, true, 0, VK_MMA_TARGET_BLOCKS, kc, -2);
        test_attention(1, 17, 2, 64, false, 1.f, true, 0, 1, kc, 2);
        test_attention(2, 5, 3, 64, false, 2.f, true, 0, VK_MMA_TARGET_BLOCKS, kc, -2);
    }
    /* the attention output quantized for proj (qt 2 where B * H allows; T 50: a partial tile) */
    test_attention_quant(GPU_EMU(4, 1), GPU_EMU(197, 50), GPU_EMU(12, 2), 32, -2, VK_Q_INT8);
    test_attention_quant(2, 50, 2, 64, 1, VK_Q_E4M3);
    test_attention_quant(1, 17, 1, 16, 1, VK_Q_INT8);
    test_gelu();
    test_cublaslt_gelu_epilogue();
    test_quantize(VK_Q_INT8, 3.f);
    test_quantize(VK_Q_INT8, 0.01f);       /* most values saturate */
    test_quantize(VK_Q_E4M3, 3.f);
    test_quantize(VK_Q_E4M3, 448.f);       /* unit scale: every E4M3 value is hit */
    for (int mode : {VK_DQ_BIAS, VK_DQ_RESIDUAL, VK_DQ_GELU_QUANT}) {
        test_dequant<int32_t>(GPU_EMU(197, 37), 768, mode, VK_Q_INT8);
        test_dequant<float>(GPU_EMU(197, 37), 768, mode, VK_Q_E4M3);
    }
    test_dequant<int32_t>(5, 13, VK_DQ_GELU_QUANT, VK_Q_INT8);   /* N odd, fewer than a block */
    /* the LayerNorms in front of qkv and fc1, quantized (rows kernel: D 768, 32; three-pass:
     * D 100 pairs, 75 single; amax 2: a few saturate) */
    for (int qt : {VK_Q_INT8, VK_Q_E4M3}) {
        test_layernorm_quant(GPU_EMU(197, 23), 768, qt, false, 6.f);
        test_layernorm_quant(7, 32, qt, true, 2.f);
        test_layernorm_quant(13, 100, qt, true, 6.f);
        test_layernorm_quant(5, 75, qt, false, 6.f);
    }
    test_rollout(2, 197, 3, 1);
    test_rollout(3, 18, 4, 2);
    test_softmax_topk(4, 1000, 5);
    test_softmax_topk(2, 21843, 10);
    test_softmax_topk(3, 7, 7);
    test_softmax_topk(3, 500, 12, true);
    test_linear_ce(37, 10, 48, 100);     /* C below one warp: partial-warp reductions */
    test_linear_ce(8, 1000, 16, 20);     /* C over the block: several classes per thread */
    test_optim_update(1, 0, 0.f, 0.f);
    test_optim_update(0, 1, 0.f, 0.9f);
    test_optim_update(0, 0, 1e-4f, 0.9f);
    test_optim_update(0, 0, 0.f, 0.f);
    return gh_summary();
}
