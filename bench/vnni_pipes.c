// Which vector instructions compete with vpdpbusd for issue slots (docs/benchmarks.md).
// Build and run: gcc -O2 -mavx512f -mavx512vnni bench/vnni_pipes.c -o /tmp/vnni_pipes && /tmp/vnni_pipes
// Each loop issues 12 independent zmm vpdpbusd plus 4 of the instruction under test; if
// the time per iteration stays at the 12-vpdpbusd baseline, that instruction runs on
// other pipes. Cycles assume one vpdpbusd per cycle (the baseline measures the rate).
#include <stdio.h>
#include <time.h>

#define N 30000000L
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define DP12                                                                     \
  "vpdpbusd %%zmm1, %%zmm2, %%zmm4\n vpdpbusd %%zmm1, %%zmm2, %%zmm5\n"           \
  "vpdpbusd %%zmm1, %%zmm2, %%zmm6\n vpdpbusd %%zmm1, %%zmm2, %%zmm7\n"           \
  "vpdpbusd %%zmm1, %%zmm2, %%zmm8\n vpdpbusd %%zmm1, %%zmm2, %%zmm9\n"           \
  "vpdpbusd %%zmm1, %%zmm2, %%zmm10\n vpdpbusd %%zmm1, %%zmm2, %%zmm11\n"         \
  "vpdpbusd %%zmm1, %%zmm2, %%zmm12\n vpdpbusd %%zmm1, %%zmm2, %%zmm13\n"         \
  "vpdpbusd %%zmm1, %%zmm2, %%zmm14\n vpdpbusd %%zmm1, %%zmm2, %%zmm15\n"
#define DP12_BCAST                                                               \
  "vpdpbusd 0(%0)%{1to16%}, %%zmm2, %%zmm4\n vpdpbusd 4(%0)%{1to16%}, %%zmm2, %%zmm5\n"   \
  "vpdpbusd 8(%0)%{1to16%}, %%zmm2, %%zmm6\n vpdpbusd 12(%0)%{1to16%}, %%zmm2, %%zmm7\n"  \
  "vpdpbusd 16(%0)%{1to16%}, %%zmm2, %%zmm8\n vpdpbusd 20(%0)%{1to16%}, %%zmm2, %%zmm9\n" \
  "vpdpbusd 24(%0)%{1to16%}, %%zmm2, %%zmm10\n vpdpbusd 28(%0)%{1to16%}, %%zmm2, %%zmm11\n" \
  "vpdpbusd 32(%0)%{1to16%}, %%zmm2, %%zmm12\n vpdpbusd 36(%0)%{1to16%}, %%zmm2, %%zmm13\n" \
  "vpdpbusd 40(%0)%{1to16%}, %%zmm2, %%zmm14\n vpdpbusd 44(%0)%{1to16%}, %%zmm2, %%zmm15\n"
#define CLOBBER "zmm1", "zmm2", "zmm4", "zmm5", "zmm6", "zmm7", "zmm8", "zmm9", "zmm10", \
  "zmm11", "zmm12", "zmm13", "zmm14", "zmm15", "zmm16", "zmm17", "zmm18", "zmm19",     \
  "zmm20", "zmm21", "zmm22", "zmm23", "memory"

static float mem[64] __attribute__((aligned(64)));

#define RUN(name, extra)                                                         \
  do {                                                                           \
    double t0 = now();                                                           \
    for (long n = 0; n < N; n++)                                                 \
      __asm__ volatile(DP12 extra ::"r"(mem) : CLOBBER);                         \
    double ns = (now() - t0) / N * 1e9;                                          \
    if (base == 0) base = ns;                                                    \
    printf("%-26s %6.2f ns/iter  = %5.2f vpdpbusd slots\n", name, ns, 12 * ns / base); \
  } while (0)

int main(void) {
  for (int rep = 0; rep < 2; rep++) {
    double base = 0;
    RUN("12 vpdpbusd", "");
    RUN("+ 4 vfmadd231ps", "vfmadd231ps %%zmm1, %%zmm2, %%zmm16\n vfmadd231ps %%zmm1, %%zmm2, %%zmm17\n"
                           "vfmadd231ps %%zmm1, %%zmm2, %%zmm18\n vfmadd231ps %%zmm1, %%zmm2, %%zmm19\n");
    RUN("+ 4 vmulps", "vmulps %%zmm1, %%zmm2, %%zmm16\n vmulps %%zmm1, %%zmm2, %%zmm17\n"
                      "vmulps %%zmm1, %%zmm2, %%zmm18\n vmulps %%zmm1, %%zmm2, %%zmm19\n");
    RUN("+ 4 vcvtdq2ps", "vcvtdq2ps %%zmm4, %%zmm16\n vcvtdq2ps %%zmm5, %%zmm17\n"
                         "vcvtdq2ps %%zmm6, %%zmm18\n vcvtdq2ps %%zmm7, %%zmm19\n");
    RUN("+ 4 vpslld", "vpslld $8, %%zmm4, %%zmm16\n vpslld $8, %%zmm5, %%zmm17\n"
                      "vpslld $8, %%zmm6, %%zmm18\n vpslld $8, %%zmm7, %%zmm19\n");
    RUN("+ 4 vpaddd", "vpaddd %%zmm4, %%zmm1, %%zmm16\n vpaddd %%zmm5, %%zmm1, %%zmm17\n"
                      "vpaddd %%zmm6, %%zmm1, %%zmm18\n vpaddd %%zmm7, %%zmm1, %%zmm19\n");
    {
      // The kernel's form: every activation operand an embedded broadcast from memory.
      double t0 = now();
      for (long n = 0; n < N; n++) __asm__ volatile(DP12_BCAST ::"r"(mem) : CLOBBER);
      double ns = (now() - t0) / N * 1e9;
      printf("%-26s %6.2f ns/iter  = %5.2f vpdpbusd slots\n", "12 vpdpbusd, broadcasts", ns, 12 * ns / base);
    }
    printf("\n");
  }
  return 0;
}
