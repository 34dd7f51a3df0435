// Memory read bandwidth, the physical limit of batch-1 decode: every thread streams its
// share of a buffer far larger than the caches with unrolled 512-bit (or 256-bit) loads
// and software prefetch, the way a decode kernel reads weights.
//   cc -O3 -march=native -fopenmp bench/membw.c -o membw && ./membw [MiB] [threads]
// Prints the best of several passes in GB/s (10^9 bytes per second).
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 2048;
  int threads = argc > 2 ? atoi(argv[2]) : omp_get_max_threads();
  size_t n = mib << 20;
  uint8_t *buf = aligned_alloc(2 << 20, n);
  // Transparent huge pages, as the engine asks for its packed weights: with 4-KiB pages
  // this read 26.5 GB/s against 28.4 on the Zen 3 EPYC (means of 8 alternations).
  madvise(buf, n, MADV_HUGEPAGE);
  memset(buf, 1, n);
  double best = 0;
  volatile uint64_t sink = 0;
  for (int pass = 0; pass < 8; pass++) {
    double t0 = now();
    uint64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      int id = omp_get_thread_num(), nt = omp_get_num_threads();
      size_t per = n / nt / 256 * 256;
      const uint8_t *p = buf + id * per, *end = p + per;
#ifdef __AVX512F__
      __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
      for (; p < end; p += 256) {
        _mm_prefetch((const char *)p + 2048, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 2112, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 2176, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 2240, _MM_HINT_T0);
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(p));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + 64));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + 128));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + 192));
      }
      a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
      total += _mm512_reduce_add_epi64(a0);
#else
      __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
      for (; p < end; p += 128) {
        _mm_prefetch((const char *)p + 2048, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 2112, _MM_HINT_T0);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)p));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + 96)));
      }
      a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
      uint64_t l[4];
      _mm256_storeu_si256((__m256i *)l, a0);
      total += l[0] + l[1] + l[2] + l[3];
#endif
    }
    double dt = now() - t0;
    sink += total;
    double gbs = (double)(n / threads / 256 * 256 * threads) / dt / 1e9;
    if (gbs > best) best = gbs;
  }
  printf("%.1f\n", best);
  return sink == 42;
}
