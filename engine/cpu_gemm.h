/* cpu_gemm.h: the CPU backend's own AVX-512 SGEMM for Linear layers (see cpu_gemm.c), used
 * instead of OpenBLAS where OpenBLAS would run AVX2 kernels on an AVX-512 CPU. */
#ifndef VIT_CPU_GEMM_H
#define VIT_CPU_GEMM_H

#include <stddef.h>

/* the CPU has AVX-512F (and this is an x86-64 GCC build) */
int vit_gemm_avx512_available(void);
/* use vit_gemm_nt_avx512 rather than OpenBLAS: AVX-512 present and OpenBLAS runs a non-AVX-512
 * kernel set.  VIT_GEMM=openblas|avx512 in the environment forces the choice. */
int vit_gemm_avx512_preferred(void);
/* floats of scratch vit_gemm_nt_avx512 needs (per calling thread) */
size_t vit_gemm_scratch_floats(void);
/* C (M,N) = A (M,K) . W^T (+ C when beta1), W (N,K) row-major; rows lda/ldw/ldc floats apart.
 * Single-threaded; scratch: vit_gemm_scratch_floats() floats.  Falls back to cblas_sgemm
 * where the AVX-512 code is not compiled in. */
void vit_gemm_nt_avx512(float *C, int ldc, const float *A, int lda, const float *W, int ldw,
                        int M, int N, int K, int beta1, float *scratch);

#endif
