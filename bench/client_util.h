/*
 * What the bench's C clients share: the stop flag their signal handler sets,
 * a monotonic clock, argument parsing and the loopback-only check.
 * Included by c-client.c and c-udp-client.c (each built as one file).
 */
#ifndef BENCH_CLIENT_UTIL_H
#define BENCH_CLIENT_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile sig_atomic_t interrupted = 0;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int is_loopback(const struct addrinfo *ai) {
  if (ai->ai_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
    return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
  }
  if (ai->ai_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ai->ai_addr;
    return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
  }
  return 0;
}

static long parse_long(const char *prog, const char *s, const char *what, long min, long max) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "%s: %s must be an integer in %ld..%ld\n", prog, what, min, max);
    exit(2);
  }
  return v;
}

#endif /* BENCH_CLIENT_UTIL_H */
