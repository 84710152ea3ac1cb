/*
 * The load client: one thread, epoll, non-blocking connects to 127.0.0.1.
 * Closed loop (always `concurrency` in flight) or a fixed rate (open loop,
 * `concurrency` is the cap). Every deadline goes through one timerfd armed at
 * the next instant that matters, so the client sleeps instead of spinning.
 * Connections read the two-byte reply and then the server's FIN; the server
 * closes first, so the client's ports never sit in TIME_WAIT.
 */
#include "compare.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define TIMER_TAG UINT64_MAX
/* After the window, connections still in flight get this long past their timeout before they are cut off. */
#define DRAIN_GRACE_NS 50000000ull

uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t self_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct {
  int fd; /* -1: free */
  uint64_t started;
  uint64_t replied; /* 0: no byte yet */
  int16_t worker;
  uint16_t source_port;
} slot;

typedef struct {
  const load_spec *spec;
  load_result *out;
  slot *slots;
  int *free_slots;
  int free_count;
  int in_flight;
  int epoll_fd;
  uint64_t window_start;
  uint64_t window_end;
} client;

static int record(client *c, const slot *s, conn_status status, int err, uint64_t now) {
  if (s->started < c->window_start || s->started >= c->window_end) return 0;
  load_result *r = c->out;
  if (r->count == r->capacity) {
    size_t capacity = r->capacity ? r->capacity * 2 : 4096;
    conn_sample *grown = realloc(r->samples, capacity * sizeof *grown);
    if (grown == NULL) return ENOMEM;
    r->samples = grown;
    r->capacity = capacity;
  }
  uint64_t end = status == STATUS_OK ? s->replied : now;
  uint64_t latency = (end - s->started) / 1000;
  r->samples[r->count++] = (conn_sample){
      .start_us = (uint32_t)((s->started - c->window_start) / 1000),
      .latency_us = latency > UINT32_MAX ? UINT32_MAX : (uint32_t)latency,
      .worker = status == STATUS_OK ? s->worker : -1,
      .source_port = s->source_port,
      .status = (uint8_t)status,
      .err = (int16_t)err,
  };
  return 0;
}

static int finish(client *c, int index, conn_status status, int err, uint64_t now) {
  slot *s = &c->slots[index];
  int rc = record(c, s, status, err, now);
  close(s->fd); /* also removes it from the epoll set */
  s->fd = -1;
  c->free_slots[c->free_count++] = index;
  c->in_flight--;
  return rc;
}

/* Returns 0, or an errno that stops the run (memory). A failed connect() is a recorded failure, not a stop. */
static int start_one(client *c, uint64_t now) {
  int index = c->free_slots[--c->free_count];
  slot *s = &c->slots[index];
  *s = (slot){.fd = -1, .started = now, .worker = -1};
  c->in_flight++;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    int err = errno;
    c->free_slots[c->free_count++] = index;
    c->in_flight--;
    return record(c, s, STATUS_ERROR, err, now);
  }
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->spec->port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    return finish(c, index, STATUS_ERROR, errno, now);
  }
  struct sockaddr_in local;
  socklen_t len = sizeof local;
  if (getsockname(s->fd, (struct sockaddr *)&local, &len) == 0) s->source_port = ntohs(local.sin_port);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)index};
  if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, s->fd, &ev) < 0) return finish(c, index, STATUS_ERROR, errno, now);
  return 0;
}

static int on_readable(client *c, int index, uint64_t now) {
  slot *s = &c->slots[index];
  for (;;) {
    unsigned char buf[64];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n > 0) {
      if (s->replied == 0) {
        s->replied = now;
        s->worker = buf[0];
      }
      continue;
    }
    if (n == 0) return finish(c, index, s->replied ? STATUS_OK : STATUS_ERROR, s->replied ? 0 : EPIPE, now);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return finish(c, index, s->replied ? STATUS_OK : STATUS_ERROR, s->replied ? 0 : errno, now);
  }
}

static void arm(int timer_fd, uint64_t at) {
  struct itimerspec spec = {0};
  if (at == 0) at = 1;
  spec.it_value.tv_sec = (time_t)(at / 1000000000ull);
  spec.it_value.tv_nsec = (long)(at % 1000000000ull);
  timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

int run_load(const load_spec *spec, load_result *out) {
  memset(out, 0, sizeof *out);
  int cap = spec->concurrency > 0 ? spec->concurrency : 1;
  client c = {.spec = spec, .out = out};
  c.slots = calloc((size_t)cap, sizeof *c.slots);
  c.free_slots = calloc((size_t)cap, sizeof *c.free_slots);
  c.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  int rc = 0;
  uint64_t stop_at = 0, stopped_at = 0;
  if (c.slots == NULL || c.free_slots == NULL || c.epoll_fd < 0 || timer_fd < 0) {
    rc = c.slots == NULL || c.free_slots == NULL ? ENOMEM : errno;
    goto done;
  }
  for (int i = cap - 1; i >= 0; i--) {
    c.slots[i].fd = -1;
    c.free_slots[c.free_count++] = i;
  }
  struct epoll_event tev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
  epoll_ctl(c.epoll_fd, EPOLL_CTL_ADD, timer_fd, &tev);

  uint64_t begin = now_ns();
  c.window_start = begin + spec->warmup_ns;
  c.window_end = c.window_start + spec->measure_ns;
  uint64_t hard_end = c.window_end + spec->timeout_ns + DRAIN_GRACE_NS;
  uint64_t interval = spec->rate > 0 ? 1000000000ull / spec->rate : 0;
  uint64_t next_start = begin;
  uint64_t started = 0;
  uint64_t next_timeout_check = begin + spec->timeout_ns;
  stop_at = spec->stall_pid > 0 ? c.window_start + spec->stall_at_ns : 0;
  int in_window = 0;
  uint64_t cpu_at_start = 0;

  for (;;) {
    uint64_t now = now_ns();
    if (compare_interrupted) {
      out->interrupted = 1;
      break;
    }
    if (!in_window && now >= c.window_start) {
      in_window = 1;
      cpu_at_start = self_cpu_ns();
      if (spec->mark) spec->mark(spec->mark_context, 0);
    }
    if (in_window == 1 && now >= c.window_end) {
      in_window = 2;
      out->client_cpu_ns = self_cpu_ns() - cpu_at_start;
      out->elapsed_ns = now - c.window_start;
      if (spec->mark) spec->mark(spec->mark_context, 1);
    }
    /* Stall: stop once, resume exactly once, whatever else happens. */
    if (stop_at && !stopped_at && now >= stop_at) {
      kill(spec->stall_pid, SIGSTOP);
      stopped_at = now;
    }
    if (stopped_at && !out->resumed && now >= stopped_at + spec->stall_ns) {
      kill(spec->stall_pid, SIGCONT);
      out->resumed = 1;
      out->stopped_ns = now - stopped_at;
    }
    /* New connections. */
    int may_start = now < c.window_end && (spec->max_connections == 0 || started < spec->max_connections);
    if (may_start && spec->rate == 0) {
      while (c.free_count > 0 && (spec->max_connections == 0 || started < spec->max_connections)) {
        if ((rc = start_one(&c, now)) != 0) goto done;
        started++;
      }
    } else if (may_start) {
      while (next_start <= now && (spec->max_connections == 0 || started < spec->max_connections)) {
        if (c.free_count == 0) break; /* at the cap: this start waits, the rate falls behind */
        if ((rc = start_one(&c, now)) != 0) goto done;
        started++;
        next_start += interval;
      }
    }
    /* Timeouts. */
    if (now >= next_timeout_check) {
      next_timeout_check = now + spec->timeout_ns;
      for (int i = 0; i < cap; i++) {
        if (c.slots[i].fd < 0) continue;
        uint64_t deadline = c.slots[i].started + spec->timeout_ns;
        if (now >= deadline) {
          if ((rc = finish(&c, i, c.slots[i].replied ? STATUS_OK : STATUS_TIMEOUT, 0, now)) != 0) goto done;
        } else if (deadline < next_timeout_check) {
          next_timeout_check = deadline;
        }
      }
    }
    int no_more = now >= c.window_end || (spec->max_connections != 0 && started >= spec->max_connections);
    if (no_more && c.in_flight == 0 && (!stopped_at || out->resumed) && in_window == 2) break;
    if (no_more && c.in_flight == 0 && in_window < 2 && spec->max_connections != 0) {
      /* Count limit reached before the window ended: the window ends now. */
      out->client_cpu_ns = self_cpu_ns() - cpu_at_start;
      out->elapsed_ns = now - c.window_start;
      if (spec->mark) spec->mark(spec->mark_context, 1);
      break;
    }
    if (now >= hard_end) {
      for (int i = 0; i < cap; i++) {
        if (c.slots[i].fd >= 0 && (rc = finish(&c, i, STATUS_CUT_OFF, 0, now)) != 0) goto done;
      }
      break;
    }
    /* Sleep until the next instant that matters, or a socket event. */
    uint64_t wake = hard_end;
    if (in_window == 0 && c.window_start < wake) wake = c.window_start;
    if (in_window == 1 && c.window_end < wake) wake = c.window_end;
    if (c.in_flight > 0 && next_timeout_check < wake) wake = next_timeout_check;
    if (may_start && spec->rate > 0 && c.free_count > 0 && next_start < wake) wake = next_start;
    if (stop_at && !stopped_at && stop_at < wake) wake = stop_at;
    if (stopped_at && !out->resumed && stopped_at + spec->stall_ns < wake) wake = stopped_at + spec->stall_ns;
    arm(timer_fd, wake);
    struct epoll_event events[256];
    int n = epoll_wait(c.epoll_fd, events, 256, -1);
    if (n < 0 && errno != EINTR) {
      rc = errno;
      goto done;
    }
    now = now_ns();
    for (int i = 0; i < n; i++) {
      if (events[i].data.u64 == TIMER_TAG) {
        uint64_t expirations;
        while (read(timer_fd, &expirations, sizeof expirations) > 0) {
        }
        continue;
      }
      int index = (int)events[i].data.u64;
      if (c.slots[index].fd < 0) continue;
      int was_replied = c.slots[index].replied != 0;
      if ((rc = on_readable(&c, index, now)) != 0) goto done;
      /* A finished slot keeps its fields until reused, so `replied` is still readable here. */
      if (!was_replied && c.slots[index].replied >= c.window_start && c.slots[index].replied < c.window_end) {
        out->completed_in_window++;
      }
    }
  }
done:
  if (c.slots != NULL) {
    for (int i = 0; i < cap; i++) {
      if (c.slots[i].fd >= 0) close(c.slots[i].fd);
    }
  }
  if (stopped_at && !out->resumed) {
    kill(spec->stall_pid, SIGCONT);
    out->resumed = 1;
    out->stopped_ns = now_ns() - stopped_at;
  }
  free(c.slots);
  free(c.free_slots);
  if (c.epoll_fd >= 0) close(c.epoll_fd);
  if (timer_fd >= 0) close(timer_fd);
  return rc;
}

void free_load(load_result *r) {
  free(r->samples);
  r->samples = NULL;
  r->count = r->capacity = 0;
}
