/*
 * The heavy handler's CPU work: one definition, compiled into the
 * reuseport-compare executable (the C models' handler) and into the addon
 * (cpuBurn, which the Node cluster workers call), so a Node worker burns the
 * very loop the executable calibrated, and the heavy phase measures the accept
 * model rather than V8.
 */
#ifndef REUSEPORT_BURN_H
#define REUSEPORT_BURN_H

#include <stdint.h>

/* A xorshift loop the compiler cannot drop or shorten: about a nanosecond per iteration. */
static inline uint64_t burn(uint64_t iterations) {
  uint64_t x = 88172645463325252ull;
  for (uint64_t i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    __asm__ volatile("" : "+r"(x));
  }
  return x;
}

#endif /* REUSEPORT_BURN_H */
