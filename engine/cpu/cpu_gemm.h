/* cpu_gemm.h: the CPU backend's own AVX-512 SGEMM for Linear layers (see cpu_gemm.c), used
 * instead of OpenBLAS where OpenBLAS would run AVX2 kernels on an AVX-512 CPU. */
#ifndef VIT_CPU_GEMM_H
#define VIT_CPU_GEMM_H

#include <stddef.h>

/* the CPU has AVX-512F (and this is an x86-64 GCC build) */
int vit_gemm_avx512_available(void);
/* use vit_gemm_packed rather than OpenBLAS: AVX-512 present and OpenBLAS runs a non-AVX-512
 * kernel set.  VIT_GEMM=openblas|avx512 in the environment forces the choice. */
int vit_gemm_avx512_preferred(void);
/* panel width of the packed layout: column ranges passed to vit_gemm_packed start at a
 * multiple of it */
#define VIT_GEMM_PANEL 32
/* floats of the packed copy of a (N, K) weight matrix */
size_t vit_gemm_packed_floats(int N, int K);
/* Wp (vit_gemm_packed_floats(N, K)) = W (N, K) row-major, packed for vit_gemm_packed */
void vit_gemm_pack(float *Wp, const float *W, int N, int K);
/* C[m][n] = sum_k A[m][k] W[n][k] (+ C[m][n] when beta1) for m < M and n0 <= n < n1, with Wp
 * = vit_gemm_pack(W, N, K), n0 a multiple of VIT_GEMM_PANEL, n1 <= N; C and A point at row 0
 * (C at column 0), rows ldc / lda floats apart.  Single-threaded, allocates nothing. */
void vit_gemm_packed(float *C, int ldc, const float *A, int lda, const float *Wp, int K, int M,
                     int n0, int n1, int beta1);

#endif
