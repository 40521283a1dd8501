/* kernels/dev/layernorm.cu: lab for the residual-add + LayerNorm kernel (kernels/layernorm.cuh).
 *   layernorm [rows=64*197] [D=768]
 * Versions (res is the FP16 residual stream unless said otherwise):
 *   1  residual_layernorm (engine): warp per row, the row in registers when D % 8 == 0
 *      (residual_layernorm_rows_kernel), else version 2
 *   2  the three-pass kernel, __half2 pairs (residual_layernorm_kernel<2>; D must be even)
 *   4  the engine's kernel before 2026-11-23: FP32 residual stream (12 bytes per element instead
 *      of 8), kept as the baseline
 * (Version 3, a scalar register-held row for four fixed D, was dropped once version 1 held
 * rows in registers itself; results before that in bench/results/gpu_20261123.md.)
 * Every version rounds res + branch to FP16 (FP32 for 4) and normalizes the stored value.
 * Checked against float64: res with the storage's rounding (FP16: 2^-11 relative; FP32: 1e-6),
 * out 1e-3 + 1e-3|ref| against the float64 LayerNorm of the stored values (version 4: of the
 * FP32 sum), then timed; bytes counted as res read + written, branch read and out written
 * (8 per element, 12 for version 4). */
#include "gpu_harness.h"
#include "cpu_ref.h"
#include "layernorm.cuh"

/* version 4: the FP32-residual kernel the engine had before the FP16 stream */
__global__ void ln_f32res_kernel(__half *out, float *res, const __half *branch, const float *w,
                                 const float *b, int N, int D, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    float *r = res + (long long)row * D;
    const __half *br = branch + (long long)row * D;
    float sum = 0.f;
    for (int i = lane; i < D; i += 32) {
        float v = r[i] + __half2float(br[i]);
        r[i] = v;
        sum += v;
    }
    float mean = vk_warp_sum(sum) / D;
    float sq = 0.f;
    for (int i = lane; i < D; i += 32) { float d = r[i] - mean; sq += d * d; }
    float rstd = rsqrtf(vk_warp_sum(sq) / D + eps);
    __half *o = out + (long long)row * D;
    for (int i = lane; i < D; i += 32) o[i] = __float2half((r[i] - mean) * rstd * w[i] + b[i]);
}

int main(int argc, char **argv) {
    int N = argc > 1 ? atoi(argv[1]) : 64 * 197, D = argc > 2 ? atoi(argv[2]) : 768;
    const float eps = 1e-6f;
    cudaDeviceProp p;
    GH_CUDA(cudaGetDeviceProperties(&p, 0));
    printf("# %s: residual_layernorm rows=%d D=%d\n", p.name, N, D);
    gh_seed();
    std::vector<float> res((size_t)N * D), br((size_t)N * D), w(D), b(D);
    gh_fill(res, 3.f, 0.5f); gh_round_half(res); gh_fill(br, 1.f); gh_round_half(br);
    gh_fill(w, 0.5f, 1.f); gh_fill(b, 0.2f);
    /* references: float64 sum; stored FP16 (host copy of the kernels' add) or FP32 sum; LN of each */
    std::vector<double> rsum((size_t)N * D), rs16((size_t)N * D), rs32((size_t)N * D);
    std::vector<double> rout16((size_t)N * D), rout32((size_t)N * D);
    for (size_t i = 0; i < rsum.size(); i++) {
        rsum[i] = (double)res[i] + br[i];
        rs32[i] = res[i] + br[i];
        rs16[i] = __half2float(__float2half(res[i] + br[i]));
    }
    for (int r = 0; r < N; r++) {
        ref_ln_row(&rout16[(size_t)r * D], &rs16[(size_t)r * D], w.data(), b.data(), D, eps);
        ref_ln_row(&rout32[(size_t)r * D], &rs32[(size_t)r * D], w.data(), b.data(), D, eps);
    }
    float *dres32 = gh_dev<float>(res.size()), *dw = gh_up(w), *db = gh_up(b);
    __half *dres = gh_dev<__half>(res.size());
    __half *dbr = gh_up_half(br), *dout = gh_dev<__half>((size_t)N * D);
    std::vector<__half> res_h(res.size());
    for (size_t i = 0; i < res.size(); i++) res_h[i] = __float2half(res[i]);
    auto launch = [&](int v) {
        if (v == 1) residual_layernorm(dout, dres, dbr, dw, db, N, D, eps, 0);
        else if (v == 2 && D % 2) return false;
        else if (v == 2) residual_layernorm_kernel<2><<<vk_cdiv(N, 8), 256>>>(dout, dres, dbr, dw, db, N, D, eps, vk_qout{});
        else ln_f32res_kernel<<<vk_cdiv(N, 8), 256>>>(dout, dres32, dbr, dw, db, N, D, eps);
        return true;
    };
    printf("%-10s %10s %10s %s\n", "version", "ms", "GB/s", "check");
    for (int v : {1, 2, 4}) {
        GH_CUDA(cudaMemcpy(dres, res_h.data(), res_h.size() * 2, cudaMemcpyHostToDevice));
        GH_CUDA(cudaMemcpy(dres32, res.data(), res.size() * 4, cudaMemcpyHostToDevice));
        GH_CUDA(cudaMemset(dout, 0xff, (size_t)N * D * 2));
        if (!launch(v)) { printf("v2 needs an even D\n"); continue; }
        GH_SYNC();
        char name[64];
        int ok;
        snprintf(name, sizeof name, "v%d res", v);
        if (v == 4) ok = gh_check(name, gh_down(dres32, rsum.size()), rsum, 1e-5, 1e-6);
        else ok = gh_check(name, gh_down_half(dres, rsum.size()), rsum, 3e-8, 4.9e-4);
        snprintf(name, sizeof name, "v%d out", v);
        ok &= gh_check(name, gh_down_half(dout, rout16.size()), v == 4 ? rout32 : rout16, 1e-3, 1e-3);
        /* timing adds the branch again each run: values drift, cost does not */
        float ms = gh_time_ms([&]() { launch(v); }, 3, 50);
        double bytes = (double)N * D * (v == 4 ? 4 + 4 + 2 + 2 : 2 + 2 + 2 + 2);
        printf("v%-9d %10.4f %10.1f %s\n", v, ms, bytes / ms / 1e6, ok ? "ok" : "FAIL");
    }
    cudaFree(dres32); cudaFree(dw); cudaFree(db); cudaFree(dres); cudaFree(dbr); cudaFree(dout);
    return gh_summary();
}
