// The integer matmuls' compute roof on this host: vpdpbusd (512-bit, AVX-512 VNNI)
// instructions per second on one core, with enough independent chains to hide latency
// and operands in registers, so nothing but the execution ports limits it.
//   cc -O3 -march=native bench/vnni_peak.c -o bench/out/vnni_peak && bench/out/vnni_peak
// Prints G instructions/s per core and the GMAC/s roofs of 8-bit activations (64 MACs
// per instruction) and 16-bit ones (two instructions per 64 MACs), for one core.
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHAINS 12
#define DP(x) x = _mm512_dpbusd_epi32(x, a, b)

int main(void) {
  const long iters = 50000000;
  // Twelve named accumulators, not an array: an array is stored back to memory every
  // iteration, and the store-to-load latency then bounds the chains.
  __m512i c0 = _mm512_set1_epi32(0), c1 = _mm512_set1_epi32(1), c2 = _mm512_set1_epi32(2),
          c3 = _mm512_set1_epi32(3), c4 = _mm512_set1_epi32(4), c5 = _mm512_set1_epi32(5),
          c6 = _mm512_set1_epi32(6), c7 = _mm512_set1_epi32(7), c8 = _mm512_set1_epi32(8),
          c9 = _mm512_set1_epi32(9), c10 = _mm512_set1_epi32(10), c11 = _mm512_set1_epi32(11);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5);
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (long i = 0; i < iters; i++) {
      DP(c0); DP(c1); DP(c2); DP(c3); DP(c4); DP(c5);
      DP(c6); DP(c7); DP(c8); DP(c9); DP(c10); DP(c11);
      // The operands are loop-invariant: this keeps the compiler from hoisting them.
      __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5),
                       "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
    }
    double rate = iters * (double)CHAINS / (now() - t0) / 1e9;
    if (rate > best) best = rate;
  }
  __m512i all = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                 _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
  all = _mm512_add_epi32(all, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
  int sink = _mm512_reduce_add_epi32(all);
  printf("vpdpbusd zmm: %.2f G/s per core; roof %.0f GMAC/s (8-bit), %.0f GMAC/s (16-bit)"
         " per core (checksum %d)\n", best, best * 64, best * 32, sink & 1);
  return 0;
}
