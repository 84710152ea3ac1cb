/*
 * c-udp-client HOST PORT DATAGRAMS CONCURRENCY [TIME_LIMIT_MS]
 *
 * Reference UDP load generator for `npm run bench`, doing what
 * `reuseport load --protocol udp` does: every datagram from its own socket
 * (so its own source port, which is what SO_REUSEPORT hashes), at most
 * CONCURRENCY waiting for their reply. Single-threaded epoll. A datagram
 * succeeds when a reply arrives; one with no reply within 2000 ms counts as
 * TIMEOUT; other failures by errno name.
 *
 * Bounded: DATAGRAMS attempts at most and a hard time limit (default 30000 ms).
 * Only loopback targets (127.0.0.0/8, ::1) are allowed.
 *
 * stdout: one JSON line, the same shape as c-client's
 *   {"connections":N,"ok":n,"failed":f,"elapsedMs":ms,"ratePerSec":r,
 *    "timedOut":false,"errors":{"ECONNREFUSED":k,...}}
 *
 * Build: cc -O2 -Wall -Wextra -o c-udp-client c-udp-client.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_util.h"

#define MAX_CONCURRENCY 4096
#define MAX_DATAGRAMS 10000000L
#define REPLY_TIMEOUT_MS 2000.0

struct flight {
  int fd;
  double sent_at;
};

int main(int argc, char **argv) {
  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: c-udp-client HOST PORT DATAGRAMS CONCURRENCY [TIME_LIMIT_MS]\n");
    return 2;
  }
  long total = parse_long("c-udp-client", argv[3], "DATAGRAMS", 1, MAX_DATAGRAMS);
  int concurrency = (int)parse_long("c-udp-client", argv[4], "CONCURRENCY", 1, MAX_CONCURRENCY);
  long limit_ms = argc == 6 ? parse_long("c-udp-client", argv[5], "TIME_LIMIT_MS", 1, 600000) : 30000;
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  int rc = getaddrinfo(argv[1], argv[2], &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "c-udp-client: bad address %s:%s: %s\n", argv[1], argv[2], gai_strerror(rc));
    return 2;
  }
  if (!is_loopback(ai)) {
    fprintf(stderr, "c-udp-client: refusing non-loopback target %s\n", argv[1]);
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("c-udp-client: epoll_create1");
    return 1;
  }
  struct flight *flights = calloc((size_t)concurrency, sizeof *flights);
  if (flights == NULL) return 1;
  for (int i = 0; i < concurrency; i++) flights[i].fd = -1;
  long started = 0, ok = 0, timeouts = 0, other = 0, refused = 0;
  int in_flight = 0;
  double t0 = now_ms();
  int timed_out = 0;
  char reply[512];
  struct epoll_event events[256];

  for (;;) {
    double now = now_ms();
    if (interrupted || now - t0 > (double)limit_ms) {
      timed_out = !interrupted;
      break;
    }
    /* Fill free slots. */
    for (int i = 0; i < concurrency && started < total; i++) {
      if (flights[i].fd >= 0) continue;
      started++;
      int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 || send(fd, "x\n", 2, 0) < 0) {
        if (errno == ECONNREFUSED) refused++;
        else other++;
        if (fd >= 0) close(fd);
        continue;
      }
      struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      flights[i].fd = fd;
      flights[i].sent_at = now;
      in_flight++;
    }
    if (in_flight == 0 && started >= total) break;
    int n = epoll_wait(ep, events, 256, 50);
    for (int k = 0; k < n; k++) {
      struct flight *f = &flights[events[k].data.u32];
      ssize_t got = recv(f->fd, reply, sizeof reply, 0);
      if (got < 0 && errno == EAGAIN) continue;
      if (got >= 0) ok++;
      else if (errno == ECONNREFUSED) refused++;
      else other++;
      close(f->fd);
      f->fd = -1;
      in_flight--;
    }
    now = now_ms();
    for (int i = 0; i < concurrency; i++) {
      if (flights[i].fd >= 0 && now - flights[i].sent_at > REPLY_TIMEOUT_MS) {
        close(flights[i].fd);
        flights[i].fd = -1;
        in_flight--;
        timeouts++;
      }
    }
  }
  for (int i = 0; i < concurrency; i++) {
    if (flights[i].fd >= 0) {
      close(flights[i].fd);
      timeouts++;
    }
  }
  double elapsed = now_ms() - t0;
  long failed = timeouts + other + refused;
  printf("{\"connections\":%ld,\"ok\":%ld,\"failed\":%ld,\"elapsedMs\":%.1f,\"ratePerSec\":%.1f,\"timedOut\":%s,"
         "\"errors\":{\"TIMEOUT\":%ld,\"ECONNREFUSED\":%ld,\"OTHER\":%ld}}\n",
         started, ok, failed, elapsed, elapsed > 0 ? (double)ok * 1000.0 / elapsed : 0.0, timed_out ? "true" : "false",
         timeouts, refused, other);
  free(flights);
  close(ep);
  freeaddrinfo(ai);
  return 0;
}
