/*
 * c-client HOST PORT CONNECTIONS CONCURRENCY [TIME_LIMIT_MS]
 *
 * Reference TCP connection load generator for `npm run bench`.
 * Single-threaded epoll with non-blocking connects, at most CONCURRENCY in
 * flight. Each connection: connect, read until EOF (the server writes one
 * greeting line and closes), close. A connection succeeds when EOF arrives
 * after at least one byte. Failures are counted by errno name.
 *
 * Bounded: exactly CONNECTIONS attempts at most, and a hard time limit
 * (default 30000 ms) after which in-flight connections count as TIMEOUT and
 * the report is printed. Only loopback targets (127.0.0.0/8, ::1) are allowed.
 *
 * stdout: one JSON line
 *   {"connections":N,"ok":n,"failed":f,"elapsedMs":ms,"ratePerSec":r,
 *    "timedOut":false,"errors":{"ECONNREFUSED":k,...}}
 *
 * Build: cc -O2 -Wall -Wextra -o c-client c-client.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
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
#define MAX_CONNECTIONS 10000000L
#define MAX_ERRNO 256
#define ERR_EMPTY MAX_ERRNO       /* EOF before any byte */
#define ERR_TIMEOUT (MAX_ERRNO + 1) /* still in flight at the time limit */

struct conn {
  int fd;
  int got_bytes;
};

static unsigned long err_counts[MAX_ERRNO + 2];


static const char *err_name(int e) {
  switch (e) {
  case ECONNREFUSED: return "ECONNREFUSED";
  case ECONNRESET: return "ECONNRESET";
  case ETIMEDOUT: return "ETIMEDOUT";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case EADDRINUSE: return "EADDRINUSE";
  case EMFILE: return "EMFILE";
  case ENFILE: return "ENFILE";
  case ENOBUFS: return "ENOBUFS";
  case ENOMEM: return "ENOMEM";
  case EPIPE: return "EPIPE";
  case ENETUNREACH: return "ENETUNREACH";
  case EHOSTUNREACH: return "EHOSTUNREACH";
  case EAGAIN: return "EAGAIN";
  case EINVAL: return "EINVAL";
  case ERR_EMPTY: return "EMPTY";
  case ERR_TIMEOUT: return "TIMEOUT";
  default: return NULL;
  }
}

static void count_error(int e) {
  if (e < 0 || e > ERR_TIMEOUT) e = 0;
  err_counts[e]++;
}

int main(int argc, char **argv) {
  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: c-client HOST PORT CONNECTIONS CONCURRENCY [TIME_LIMIT_MS]\n");
    return 2;
  }
  long total = parse_long("c-client", argv[3], "CONNECTIONS", 1, MAX_CONNECTIONS);
  int concurrency = (int)parse_long("c-client", argv[4], "CONCURRENCY", 1, MAX_CONCURRENCY);
  long limit_ms = argc == 6 ? parse_long("c-client", argv[5], "TIME_LIMIT_MS", 1, 600000) : 30000;
  if (concurrency > total) concurrency = (int)total;

  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  int rc = getaddrinfo(argv[1], argv[2], &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "c-client: bad address %s:%s: %s\n", argv[1], argv[2], gai_strerror(rc));
    return 2;
  }
  if (!is_loopback(ai)) {
    fprintf(stderr, "c-client: refusing non-loopback target %s\n", argv[1]);
    return 2;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_PDEATHSIG, SIGTERM); /* stop (and report) if the runner dies */

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("c-client: epoll_create1");
    return 1;
  }
  struct conn *slots = calloc((size_t)concurrency, sizeof *slots);
  int *free_slots = calloc((size_t)concurrency, sizeof *free_slots);
  struct epoll_event *events = calloc((size_t)concurrency, sizeof *events);
  if (slots == NULL || free_slots == NULL || events == NULL) {
    fprintf(stderr, "c-client: out of memory\n");
    return 1;
  }
  int nfree = 0;
  for (int i = concurrency - 1; i >= 0; i--) {
    slots[i].fd = -1;
    free_slots[nfree++] = i;
  }

  long started = 0, ok = 0, failed = 0;
  int inflight = 0, timed_out = 0;
  char buf[512];
  double t0 = now_ms();
  double deadline = t0 + (double)limit_ms;

  while (!interrupted) {
    /* Start connections up to the concurrency limit. */
    while (inflight < concurrency && started < total) {
      started++;
      int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        failed++;
        count_error(errno);
        continue;
      }
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        failed++;
        count_error(errno);
        close(fd);
        continue;
      }
      int slot = free_slots[--nfree];
      slots[slot].fd = fd;
      slots[slot].got_bytes = 0;
      struct epoll_event ev;
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u32 = (uint32_t)slot;
      if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        failed++;
        count_error(errno);
        close(fd);
        slots[slot].fd = -1;
        free_slots[nfree++] = slot;
        continue;
      }
      inflight++;
    }
    if (inflight == 0) break; /* all done */

    double left = deadline - now_ms();
    if (left <= 0) {
      timed_out = 1;
      break;
    }
    int n = epoll_wait(ep, events, concurrency, left > 1000 ? 1000 : (int)left + 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("c-client: epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) {
      int slot = (int)events[i].data.u32;
      struct conn *c = &slots[slot];
      int done = 0, err = 0;
      if (events[i].events & EPOLLERR) {
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err == 0) err = EIO;
        done = 1;
      } else {
        for (;;) {
          ssize_t r = read(c->fd, buf, sizeof buf);
          if (r > 0) {
            c->got_bytes = 1;
            continue;
          }
          if (r == 0) {
            done = 1;
            if (!c->got_bytes) err = ERR_EMPTY;
            break;
          }
          if (errno == EINTR) continue;
          if (errno == EAGAIN) break;
          err = errno;
          done = 1;
          break;
        }
      }
      if (!done) continue;
      close(c->fd); /* close() removes it from the epoll set */
      c->fd = -1;
      free_slots[nfree++] = slot;
      inflight--;
      if (err == 0) {
        ok++;
      } else {
        failed++;
        count_error(err);
      }
    }
  }
  double elapsed = now_ms() - t0;

  /* Whatever is still open at the time limit (or on a signal) failed. */
  for (int i = 0; i < concurrency; i++) {
    if (slots[i].fd >= 0) {
      close(slots[i].fd);
      slots[i].fd = -1;
      failed++;
      count_error(ERR_TIMEOUT);
    }
  }

  printf("{\"connections\":%ld,\"ok\":%ld,\"failed\":%ld,\"elapsedMs\":%.1f,\"ratePerSec\":%.1f,"
         "\"timedOut\":%s,\"interrupted\":%s,\"notStarted\":%ld,\"errors\":{",
         total, ok, failed, elapsed, elapsed > 0 ? (double)ok * 1000.0 / elapsed : 0.0,
         timed_out ? "true" : "false", interrupted ? "true" : "false", total - started);
  int first = 1;
  for (int e = 0; e <= ERR_TIMEOUT; e++) {
    if (err_counts[e] == 0) continue;
    const char *name = err_name(e);
    if (name != NULL)
      printf("%s\"%s\":%lu", first ? "" : ",", name, err_counts[e]);
    else
      printf("%s\"errno%d\":%lu", first ? "" : ",", e, err_counts[e]);
    first = 0;
  }
  printf("}}\n");
  fflush(stdout);
  free(slots);
  free(free_slots);
  free(events);
  close(ep);
  freeaddrinfo(ai);
  return 0;
}
