/* kernels/dev/attention.cu: lab for the fused attention kernel (kernels/attention.cuh).
 *   attention [B=64] [T=197] [H=12] [dh=64]
 * Versions:
 *   1  attention_naive_kernel: block per (query row, head, image), CUDA cores (engine fallback)
 *   2  attention_wmma_kernel<4>: 4 warps x 16 query rows, K/V in shared memory (the engine's for dh != 64)
 *   3  attention_wmma_kernel<8>: 8 warps, K/V staged half as often; needs ~224 KB smem at T=197
 *   4  attention_wmma_kernel<2>: 2 warps, twice the blocks (small batches)
 *   5  attention_mma_kernel<64> (kernels/attention_mma.cuh, the engine's for dh 64): flash-style
 *      online softmax on raw mma.sync m16n8k16, scores in registers, K/V by ldmatrix, one block
 *      per (image, head) at large batch, 60 KB smem at T = 197
 *      "v5 kc32" / "v5 kc64": the same kernel with 32 / 64 keys per online-softmax step (and its
 *      FAST softmax: ex2.approx.ftz, l summed over the quad once; attention_mma.cuh,
 *      vk_attn_chunk), as attention_mma(..., kc) launches them; "v5 kc16 fast": 16 keys with
 *      the FAST softmax (lab only: tells the two changes apart)
 *      "v5 kcN qt2": two 16-row query tiles per warp (attention_mma_kernel's QT = 2, FAST, at most 4
 *      warps a block), as attention_mma(..., kc, 2) launches them: only where B * H >= 264 (one
 *      block per head), smaller batches get qt 1 (= "v5 kcN"); "v5 kcN qt2 sp": QT = 2 forced at
 *      any batch, heads split over blocks of 4 warps (small batches: is QT 2 worth it there too?)
 * v2 and v5 (every kc) are also checked with the head-averaged maps (avg, CLS row) against the
 * reference.
 * Each is checked against the float64 reference on a few images (out: 2e-3 + 5e-3|ref|), then
 * timed at the full batch; FLOPs counted as 4*B*H*T^2*dh, bytes as qkv read + out written. */
#include "gpu_harness.h"
#include "cpu_ref.h"
#include "attention.cuh"
#include "attention_mma.cuh"

template <int W> static void launch_wmma(__half *out, const __half *qkv, int B, int T, int H, int dh) {
    dim3 grid(vk_cdiv(T, 16 * W), H, B);
    attention_wmma_kernel<W><<<grid, 32 * W, attention_wmma_smem(T, dh, W)>>>(
        out, nullptr, nullptr, qkv, T, H, dh, 1.f / sqrtf((float)dh), 1.f / H);
}
/* kc: 16, 32, 64 through attention_mma with qt 1 or 2; kc -16: <64, 16, FAST> directly; qt -2:
 * <64, kc, FAST, 2> directly, planned for 2 tiles a warp at any batch */
static void launch_mma(__half *out, float *avg, float *cls, const __half *qkv, int B, int T, int H, int dh,
                       int target = VK_MMA_TARGET_BLOCKS, int kc = VK_MMA_KC_DEFAULT, int qt = VK_MMA_QT_DEFAULT) {
    if (kc == -16)
        vk_attention_mma_launch<16, true>(attention_mma_plan(B, T, H, target), out, avg, cls, qkv, B, T, H, dh, 0);
    else if (qt == -2)
        vk_attention_mma_dispatch(attention_mma_plan(B, T, H, target, 2), kc, 2, out, avg, cls, qkv, B, T, H, dh, 0);
    else
        attention_mma(out, avg, cls, qkv, B, T, H, dh, (size_t)1 << 30, 0, target, kc, qt);
}
static void launch_naive(__half *out, const __half *qkv, int B, int T, int H, int dh) {
    dim3 grid(T, H, B);
    attention_naive_kernel<<<grid, 128, attention_naive_smem(T)>>>(out, nullptr, nullptr, qkv, T, H,
                                                                       dh, 1.f / sqrtf((float)dh), 1.f / H);
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 64, T = argc > 2 ? atoi(argv[2]) : 197;
    int H = argc > 3 ? atoi(argv[3]) : 12, dh = argc > 4 ? atoi(argv[4]) : 64, D = H * dh;
    cudaDeviceProp p;
    GH_CUDA(cudaGetDeviceProperties(&p, 0));
    size_t optin = p.sharedMemPerBlockOptin;
    printf("# %s: attention B=%d T=%d H=%d dh=%d, smem opt-in %zu\n", p.name, B, T, H, dh, optin);
    GH_CUDA(cudaFuncSetAttribute(attention_wmma_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)optin));
    GH_CUDA(cudaFuncSetAttribute(attention_wmma_kernel<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)optin));
    GH_CUDA(cudaFuncSetAttribute(attention_wmma_kernel<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)optin));
    GH_CUDA(attention_mma_prepare(optin));
    GH_CUDA(cudaFuncSetAttribute(attention_mma_kernel<64, 16, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)optin));
    gh_seed();
    std::vector<float> qkv((size_t)B * T * 3 * D);
    gh_fill(qkv, 1.f);
    gh_round_half(qkv);
    __half *dqkv = gh_up_half(qkv), *dout = gh_dev<__half>((size_t)B * T * D);
    const int Bv = B < 2 ? B : 2;   /* images checked against the float64 reference */
    std::vector<float> head(qkv.begin(), qkv.begin() + (size_t)Bv * T * 3 * D);
    std::vector<double> rout, ravg;
    ref_attention(rout, ravg, head, Bv, T, H, dh);
    double flops = 4.0 * B * H * (double)T * T * dh, bytes = (double)B * T * 4 * D * 2;

    /* v5 as the engine plans it, then the same kernel with other work splits (target blocks:
     * 1 = one block per (image, head), 2BH / 4BH = the query tiles split over 2 / 4 blocks) */
    struct { const char *name; int warps, target, kc, qt; } vers[] = {
        {"v1 naive", 0, 0, 0, 1}, {"v2 wmma x4", 4, 0, 0, 1}, {"v3 wmma x8", 8, 0, 0, 1}, {"v4 wmma x2", 2, 0, 0, 1},
        {"v5 mma", 5, VK_MMA_TARGET_BLOCKS, 16, 1}, {"v5 1/head", 5, 1, 16, 1}, {"v5 split 2", 5, 2 * B * H, 16, 1},
        {"v5 split 4", 5, 4 * B * H, 16, 1}, {"v5 kc16 fast", 5, VK_MMA_TARGET_BLOCKS, -16, 1},
        {"v5 kc32", 5, VK_MMA_TARGET_BLOCKS, 32, 1}, {"v5 kc64", 5, VK_MMA_TARGET_BLOCKS, 64, 1},
        {"v5 kc32 1/hd", 5, 1, 32, 1}, {"v5 kc64 1/hd", 5, 1, 64, 1},
        {"v5 kc16 qt2", 5, VK_MMA_TARGET_BLOCKS, 16, 2}, {"v5 kc32 qt2", 5, VK_MMA_TARGET_BLOCKS, 32, 2},
        {"v5 kc64 qt2", 5, VK_MMA_TARGET_BLOCKS, 64, 2}, {"v5 kc16 qt2 sp", 5, VK_MMA_TARGET_BLOCKS, 16, -2},
        {"v5 kc32 qt2 sp", 5, VK_MMA_TARGET_BLOCKS, 32, -2}, {"v5 kc64 qt2 sp", 5, VK_MMA_TARGET_BLOCKS, 64, -2}};
    printf("%-14s %10s %8s %10s %10s %s\n", "version", "ms", "TFLOP/s", "GB/s", "maxdiff", "check");
    for (auto &v : vers) {
        if (v.warps == 5 && (dh != 64 || attention_mma_smem(T, dh) > optin)) {
            printf("%-14s needs dh 64 and %zu bytes of smem\n", v.name, attention_mma_smem(T, dh));
            continue;
        }
        if (v.warps && v.warps != 5 && (dh % 16 || attention_wmma_smem(T, dh, v.warps) > optin)) {
            printf("%-14s does not fit (smem %zu > %zu or dh %% 16)\n", v.name, attention_wmma_smem(T, dh, v.warps), optin);
            continue;
        }
        auto run = [&]() {
            switch (v.warps) {
            case 0: launch_naive(dout, dqkv, B, T, H, dh); break;
            case 2: launch_wmma<2>(dout, dqkv, B, T, H, dh); break;
            case 4: launch_wmma<4>(dout, dqkv, B, T, H, dh); break;
            case 5: launch_mma(dout, nullptr, nullptr, dqkv, B, T, H, dh, v.target, v.kc, v.qt); break;
            default: launch_wmma<8>(dout, dqkv, B, T, H, dh); break;
            }
        };
        GH_CUDA(cudaMemset(dout, 0xff, sizeof(__half) * B * T * D));
        run();
        GH_SYNC();
        int ok = gh_check(v.name, gh_down_half(dout, rout.size()), rout, 2e-3, 5e-3);
        float ms = gh_time_ms(run, 3, 20);
        double diff = 0;
        {
            std::vector<float> g = gh_down_half(dout, rout.size());
            for (size_t i = 0; i < g.size(); i++) diff = fmax(diff, fabs(g[i] - rout[i]));
        }
        printf("%-14s %10.4f %8.2f %10.1f %10.3g %s\n", v.name, ms, flops / ms / 1e9, bytes / ms / 1e6, diff, ok ? "ok" : "FAIL");
    }
    /* the maps: v2 (engine) and v5, on the first Bv images */
    float *davg = gh_dev<float>((size_t)Bv * T * T), *dcls = gh_dev<float>((size_t)Bv * T);
    std::vector<double> rcls((size_t)Bv * T);
    for (int b = 0; b < Bv; b++)
        for (int j = 0; j < T; j++) rcls[(size_t)b * T + j] = ravg[(size_t)b * T * T + j];
    /* v2, then v5 with kc 16, 32, 64 and 16 FAST (-16), then qt 2 forced (-2) with kc 16, 32, 64 */
    const int map_kcs[][2] = {{0, 1}, {16, 1}, {32, 1}, {64, 1}, {-16, 1}, {16, -2}, {32, -2}, {64, -2}};
    for (auto &mk : map_kcs) {
        const int kc = mk[0], qt = mk[1];
        const int v = kc ? 5 : 2;
        if (v == 5 && (dh != 64 || attention_mma_smem(T, dh) > optin)) continue;
        if (v == 2 && !attention_uses_wmma(T, dh, optin)) continue;
        GH_CUDA(cudaMemset(davg, 0, sizeof(float) * Bv * T * T));
        GH_CUDA(cudaMemset(dcls, 0, sizeof(float) * Bv * T));
        if (v == 2) attention(dout, davg, dcls, dqkv, Bv, T, H, dh, optin, 0);
        else launch_mma(dout, davg, dcls, dqkv, Bv, T, H, dh, VK_MMA_TARGET_BLOCKS, kc, qt);
        GH_SYNC();
        char name[80], vn[40];
        if (v == 2) snprintf(vn, sizeof vn, "v2");
        else snprintf(vn, sizeof vn, "v5 kc%d%s%s", kc < 0 ? -kc : kc, kc < 0 ? " fast" : "", qt < 0 ? " qt2 sp" : "");
        snprintf(name, sizeof name, "%s head-avg probs", vn);
        gh_check(name, gh_down(davg, ravg.size()), ravg, 1e-6, 1e-4);
        snprintf(name, sizeof name, "%s cls row", vn);
        gh_check(name, gh_down(dcls, rcls.size()), rcls, 1e-6, 1e-4);
        snprintf(name, sizeof name, "%s out (with maps)", vn);
        gh_check(name, gh_down_half(dout, rout.size()), rout, 2e-3, 5e-3);
    }
    return gh_summary();
}
