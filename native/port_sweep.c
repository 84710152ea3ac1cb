/*
 * Source-port sweep: connects from each of `count` fixed source ports,
 * `repeat` times each, never two at once on one port, and keeps the first
 * line each attempt received, so JS can map source port -> answering
 * instance. TCP and UDP; an epoll loop run as napi async work. JS function
 * portSweep.
 *
 * Every attempt binds with SO_REUSEADDR: the server closes first, so the
 * TIME_WAIT is on the server side, but the previous attempt from the same
 * port may still be in LAST_ACK for a moment after close().
 */
#include "addon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SWEEP_KEEP 128
#define SWEEP_MAX_PORTS 65535
#define SWEEP_MAX_REPEAT 1000
#define SWEEP_MAX_CONCURRENCY 4096
#define SWEEP_MAX_PAYLOAD 1024
#define SWEEP_MAX_WAIT_MS 50
/* Pseudo-errnos for attempts that did not end with a kernel error. */
#define SWEEP_CUT_OFF (-1)
#define SWEEP_SILENT (-2)
#define SWEEP_NOT_RUN (-3)

typedef struct {
  int fd; /* -1: free */
  int port_index;
  int len;
  int64_t deadline;
  char buf[SWEEP_KEEP];
} sweep_conn;

typedef struct {
  /* Inputs. */
  int family;
  int type;
  any_addr target;
  socklen_t addr_len;
  int from;
  int count;
  int repeat;
  int concurrency;
  int64_t reply_timeout_ns;
  int64_t deadline_ns;
  uint8_t payload[SWEEP_MAX_PAYLOAD + 4];
  size_t payload_len;
  int index_payload;
  int cpu; /* -1: run wherever; else pin the sweep thread to this CPU for the sweep */
  napi_deferred deferred;
  napi_async_work work;
  /* Outputs: attempt k = port_index * repeat + round. */
  int32_t *errnos;
  uint8_t *reply_len;
  char *replies; /* SWEEP_KEEP bytes per attempt */
  int *rounds_done;
  int64_t elapsed_ns;
  int deadline_hit;
  int setup_err;
  const char *setup_syscall;
} sweep_job;

typedef struct {
  sweep_job *job;
  int ep;
  sweep_conn *conns;
  int *queue; /* ring of port indices ready for their next round */
  int qhead, qlen;
  int inflight;
  int64_t now;
} sweep_state;

static void sweep_record(sweep_job *j, int port_index, int err, const char *text, int len) {
  int k = port_index * j->repeat + j->rounds_done[port_index];
  const char *nl = memchr(text, '\n', (size_t)len);
  if (nl != NULL) len = (int)(nl - text);
  j->errnos[k] = err;
  j->reply_len[k] = (uint8_t)len;
  memcpy(j->replies + (size_t)k * SWEEP_KEEP, text, (size_t)len);
  j->rounds_done[port_index]++;
}

static void sweep_finish(sweep_state *s, int slot, int err) {
  sweep_conn *c = &s->conns[slot];
  sweep_job *j = s->job;
  close(c->fd); /* also leaves the epoll set */
  c->fd = -1;
  s->inflight--;
  sweep_record(j, c->port_index, err, c->buf, c->len);
  if (j->rounds_done[c->port_index] < j->repeat) {
    s->queue[(s->qhead + s->qlen) % j->count] = c->port_index;
    s->qlen++;
  }
}

/* Starts the next round of one port in a free slot; a failure before connect is recorded at once. */
static void sweep_launch(sweep_state *s, int slot, int port_index) {
  sweep_job *j = s->job;
  sweep_conn *c = &s->conns[slot];
  any_addr source;
  struct epoll_event ev;
  int one = 1, err, fd;
  int k = port_index * j->repeat + j->rounds_done[port_index];

  memset(&source, 0, sizeof(source));
  source.sa.sa_family = (sa_family_t)j->family;
  set_port(&source, j->from + port_index);
  fd = socket(j->family, j->type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    sweep_record(j, port_index, errno, "", 0);
    goto requeue;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 || bind(fd, &source.sa, j->addr_len) != 0 ||
      (connect(fd, &j->target.sa, j->addr_len) != 0 && errno != EINPROGRESS && errno != EINTR))
    goto fail;
  if (j->type == SOCK_DGRAM) {
    uint8_t *p = j->payload;
    size_t len = j->payload_len;
    if (j->index_payload) {
      /* The attempt's index, big-endian, first: what `payload-modulo` reads (BPF_LD|BPF_W|BPF_ABS 0). */
      uint32_t be = htonl((uint32_t)k);
      memcpy(p, &be, 4);
      len += 4;
    } else {
      p += 4;
    }
    if (send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) goto fail;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u32 = (uint32_t)slot;
  if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) goto fail;
  c->fd = fd;
  c->port_index = port_index;
  c->len = 0;
  c->deadline = s->now + j->reply_timeout_ns;
  s->inflight++;
  return;
fail:
  err = errno;
  close(fd);
  sweep_record(j, port_index, err, "", 0);
requeue:
  if (j->rounds_done[port_index] < j->repeat) {
    s->queue[(s->qhead + s->qlen) % j->count] = port_index;
    s->qlen++;
  }
}

static void sweep_on_event(sweep_state *s, int slot) {
  sweep_conn *c = &s->conns[slot];
  char scratch[2048];
  for (;;) {
    int keep = c->len < SWEEP_KEEP;
    ssize_t r = recv(c->fd, keep ? c->buf + c->len : scratch, keep ? (size_t)(SWEEP_KEEP - c->len) : sizeof(scratch), 0);
    if (r > 0) {
      if (keep) c->len += (int)r;
      /* UDP: one datagram is the whole reply. TCP: read until the server closes. */
      if (s->job->type == SOCK_DGRAM) {
        sweep_finish(s, slot, 0);
        return;
      }
      continue;
    }
    if (r == 0) {
      sweep_finish(s, slot, 0);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    /* Bytes first, then a reset: the reply still names who answered. */
    sweep_finish(s, slot, c->len > 0 ? 0 : errno);
    return;
  }
}

/* The reply timeout passed: UDP lost, TCP never connected (ETIMEDOUT) or connected and silent. */
static void sweep_expire(sweep_state *s, int slot) {
  sweep_conn *c = &s->conns[slot];
  any_addr peer;
  socklen_t len = sizeof(peer);
  int err = ETIMEDOUT;
  if (c->len > 0)
    err = 0;
  else if (s->job->type == SOCK_STREAM && getpeername(c->fd, &peer.sa, &len) == 0)
    err = SWEEP_SILENT;
  sweep_finish(s, slot, err);
}

static void sweep_run(sweep_job *j) {
  sweep_state st;
  sweep_state *s = &st;
  struct epoll_event *events = NULL;
  int64_t t0, end;
  cpu_set_t saved_cpus;
  int pinned = 0;
  memset(s, 0, sizeof(*s));
  if (j->cpu >= 0) {
    /*
     * A thread of libuv's pool: pinned for this sweep only, then given back its
     * mask. On loopback the SYN (or datagram) is handled in the softirq of the
     * sending CPU, so this is the CPU the receive-side lookup runs on.
     */
    cpu_set_t want;
    CPU_ZERO(&want);
    CPU_SET(j->cpu, &want);
    if (sched_getaffinity(0, sizeof(saved_cpus), &saved_cpus) != 0 ||
        sched_setaffinity(0, sizeof(want), &want) != 0) {
      j->setup_err = errno;
      j->setup_syscall = "sched_setaffinity";
      return;
    }
    pinned = 1;
  }
  s->job = j;
  s->ep = -1;
  s->conns = calloc((size_t)j->concurrency, sizeof(*s->conns));
  s->queue = calloc((size_t)j->count, sizeof(*s->queue));
  events = calloc((size_t)j->concurrency, sizeof(*events));
  if (s->conns == NULL || s->queue == NULL || events == NULL) {
    j->setup_err = ENOMEM;
    j->setup_syscall = "calloc";
    goto out;
  }
  s->ep = epoll_create1(EPOLL_CLOEXEC);
  if (s->ep < 0) {
    j->setup_err = errno;
    j->setup_syscall = "epoll_create1";
    goto out;
  }
  for (int i = 0; i < j->concurrency; i++) s->conns[i].fd = -1;
  for (int i = 0; i < j->count; i++) s->queue[i] = i;
  s->qlen = j->count;

  t0 = s->now = mono_ns();
  end = t0 + j->deadline_ns;
  for (;;) {
    int n, wait_ms;
    int64_t until = end;
    for (int slot = 0; slot < j->concurrency && s->qlen > 0; slot++) {
      if (s->conns[slot].fd >= 0) continue;
      int port_index = s->queue[s->qhead];
      s->qhead = (s->qhead + 1) % j->count;
      s->qlen--;
      sweep_launch(s, slot, port_index);
    }
    if (s->inflight == 0 && s->qlen == 0) break;
    if (s->now >= end) {
      j->deadline_hit = 1;
      break;
    }
    for (int slot = 0; slot < j->concurrency; slot++)
      if (s->conns[slot].fd >= 0 && s->conns[slot].deadline < until) until = s->conns[slot].deadline;
    wait_ms = until <= s->now ? 0 : (int)((until - s->now + 999999) / 1000000);
    if (wait_ms > SWEEP_MAX_WAIT_MS) wait_ms = SWEEP_MAX_WAIT_MS;
    n = s->inflight > 0 ? epoll_wait(s->ep, events, j->concurrency, wait_ms) : 0;
    if (n < 0 && errno != EINTR) {
      int err = errno;
      for (int slot = 0; slot < j->concurrency; slot++)
        if (s->conns[slot].fd >= 0) sweep_finish(s, slot, err);
      break;
    }
    s->now = mono_ns();
    for (int i = 0; i < n; i++) {
      int slot = (int)events[i].data.u32;
      if (s->conns[slot].fd >= 0) sweep_on_event(s, slot);
    }
    for (int slot = 0; slot < j->concurrency; slot++)
      if (s->conns[slot].fd >= 0 && s->conns[slot].deadline <= s->now) sweep_expire(s, slot);
  }
  j->elapsed_ns = mono_ns() - t0;
  for (int slot = 0; slot < j->concurrency; slot++)
    if (s->conns[slot].fd >= 0) sweep_finish(s, slot, SWEEP_CUT_OFF);
out:
  if (s->ep >= 0) close(s->ep);
  free(events);
  free(s->conns);
  free(s->queue);
  if (pinned) sched_setaffinity(0, sizeof(saved_cpus), &saved_cpus);
}

static void sweep_execute(napi_env env, void *data) {
  (void)env;
  sweep_run(data);
}

static void sweep_job_free(sweep_job *j) {
  free(j->errnos);
  free(j->reply_len);
  free(j->replies);
  free(j->rounds_done);
  free(j);
}

static napi_value sweep_result(napi_env env, sweep_job *j) {
  napi_value out, errnos, replies, text, buffer;
  size_t total = (size_t)j->count * (size_t)j->repeat;
  void *data = NULL;
  if ((out = make_object(env)) == NULL) return NULL;
  if (napi_create_arraybuffer(env, total * sizeof(int32_t), &data, &buffer) != napi_ok) goto fail;
  memcpy(data, j->errnos, total * sizeof(int32_t));
  if (napi_create_typedarray(env, napi_int32_array, total, buffer, 0, &errnos) != napi_ok ||
      napi_set_named_property(env, out, "errnos", errnos) != napi_ok)
    goto fail;
  if (napi_create_array_with_length(env, total, &replies) != napi_ok) goto fail;
  for (size_t k = 0; k < total; k++) {
    /* latin1, as the load engine decodes replies. */
    if (napi_create_string_latin1(env, j->replies + k * SWEEP_KEEP, j->reply_len[k], &text) != napi_ok ||
        napi_set_element(env, replies, (uint32_t)k, text) != napi_ok)
      goto fail;
  }
  if (napi_set_named_property(env, out, "replies", replies) != napi_ok) goto fail;
  if (!set_number(env, out, "elapsedNs", (double)j->elapsed_ns)) return NULL;
  if (napi_get_boolean(env, j->deadline_hit, &text) != napi_ok ||
      napi_set_named_property(env, out, "deadlineHit", text) != napi_ok)
    goto fail;
  return out;
fail:
  throw_last_error(env);
  return NULL;
}

static void sweep_complete(napi_env env, napi_status status, void *data) {
  sweep_job *j = data;
  napi_value result = NULL;
  if (status != napi_ok)
    napi_throw_error(env, NULL, "portSweep: the run was cancelled");
  else if (j->setup_err != 0)
    result = errno_object(env, j->setup_err, j->setup_syscall, NULL);
  else
    result = sweep_result(env, j);
  settle_async_work(env, j->deferred, j->work, result, "portSweep failed");
  sweep_job_free(j);
}

static int parse_sweep_opts(napi_env env, napi_value obj, sweep_job *j) {
  int64_t n;
  napi_value v;
  int present;
  char proto[8];
  size_t len = 0;
  const char *proto_msg = "options.protocol must be 'tcp' or 'udp'";
  if (!expect_type(env, obj, napi_object, "portSweep(options): options must be an object")) return 0;
  if (!read_int_prop(env, obj, "family", 4, 6, &n, "options.family must be 4 or 6")) return 0;
  if (n == 5) return throw_range(env, "options.family must be 4 or 6");
  j->family = n == 4 ? AF_INET : AF_INET6;
  if (!read_address(env, obj, j->family, &j->target, &j->addr_len)) return 0;
  if (!read_int_prop(env, obj, "port", 1, 65535, &n, "options.port must be an integer in 1..65535")) return 0;
  set_port(&j->target, (int)n);
  if (!get_prop(env, obj, "protocol", &v, &present)) return 0;
  if (!present) return throw_type(env, proto_msg);
  if (!expect_type(env, v, napi_string, proto_msg)) return 0;
  NAPI_OK(env, napi_get_value_string_utf8(env, v, proto, sizeof(proto), &len));
  if (strcmp(proto, "tcp") == 0)
    j->type = SOCK_STREAM;
  else if (strcmp(proto, "udp") == 0)
    j->type = SOCK_DGRAM;
  else
    return throw_type(env, proto_msg);
  if (!read_int_prop(env, obj, "from", 1, 65535, &n, "options.from must be an integer in 1..65535")) return 0;
  j->from = (int)n;
  if (!read_int_prop(env, obj, "count", 1, SWEEP_MAX_PORTS, &n, "options.count must be an integer in 1..65535"))
    return 0;
  if (j->from + n - 1 > 65535) return throw_range(env, "options.from + options.count - 1 must be at most 65535");
  j->count = (int)n;
  if (!read_int_prop(env, obj, "repeat", 1, SWEEP_MAX_REPEAT, &n, "options.repeat must be an integer in 1..1000"))
    return 0;
  j->repeat = (int)n;
  if (!read_int_prop(env, obj, "concurrency", 1, SWEEP_MAX_CONCURRENCY, &n,
                     "options.concurrency must be an integer in 1..4096"))
    return 0;
  /* One attempt per port at a time: more slots than ports would stay empty. */
  j->concurrency = n > j->count ? j->count : (int)n;
  if (!read_int_prop(env, obj, "replyTimeoutMs", 1, 600000, &n, "options.replyTimeoutMs must be in 1..600000"))
    return 0;
  j->reply_timeout_ns = n * 1000000LL;
  if (!read_int_prop(env, obj, "deadlineMs", 1, 600000, &n, "options.deadlineMs must be in 1..600000")) return 0;
  j->deadline_ns = n * 1000000LL;
  if (!get_prop(env, obj, "payload", &v, &present)) return 0;
  if (present) {
    const uint8_t *bytes;
    if (!read_bytes(env, v, &bytes, &j->payload_len, "options.payload must be a Buffer")) return 0;
    if (j->payload_len > SWEEP_MAX_PAYLOAD) return throw_range(env, "options.payload is longer than 1024 bytes");
    memcpy(j->payload + 4, bytes, j->payload_len);
  }
  if (!get_prop(env, obj, "indexPayload", &v, &present)) return 0;
  if (present && !read_bool(env, v, &j->index_payload, "options.indexPayload must be a boolean")) return 0;
  j->cpu = -1;
  if (!get_prop(env, obj, "cpu", &v, &present)) return 0;
  if (present) {
    if (!read_int_prop(env, obj, "cpu", 0, CPU_SETSIZE - 1, &n, "options.cpu must be an integer in 0..1023")) return 0;
    j->cpu = (int)n;
  }
  if (j->type == SOCK_STREAM && (j->payload_len > 0 || j->index_payload))
    return throw_type(env, "options.payload and options.indexPayload are for udp (a SYN carries no payload)");
  return 1;
}

/* portSweep(options) -> Promise<{ errnos: Int32Array, replies: string[], elapsedNs, deadlineHit } | errno object> */
napi_value js_port_sweep(napi_env env, napi_callback_info info) {
  napi_value argv[1], promise;
  sweep_job *j;
  size_t total;
  if (!get_args(env, info, 1, argv)) return NULL;
  j = calloc(1, sizeof(*j));
  if (j == NULL) {
    napi_throw_error(env, NULL, "reuseport_native: out of memory");
    return NULL;
  }
  if (!parse_sweep_opts(env, argv[0], j)) {
    sweep_job_free(j);
    return NULL;
  }
  total = (size_t)j->count * (size_t)j->repeat;
  j->errnos = malloc(total * sizeof(*j->errnos));
  j->reply_len = calloc(total, 1);
  j->replies = malloc(total * SWEEP_KEEP);
  j->rounds_done = calloc((size_t)j->count, sizeof(*j->rounds_done));
  if (j->errnos == NULL || j->reply_len == NULL || j->replies == NULL || j->rounds_done == NULL) {
    sweep_job_free(j);
    napi_throw_error(env, NULL, "reuseport_native: out of memory");
    return NULL;
  }
  for (size_t k = 0; k < total; k++) j->errnos[k] = SWEEP_NOT_RUN;
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok) {
    sweep_job_free(j);
    throw_last_error(env);
    return NULL;
  }
  if (!queue_async_work(env, "reuseport:portSweep", sweep_execute, sweep_complete, j, j->deferred, &j->work,
                        "portSweep: cannot queue the work"))
    sweep_job_free(j);
  return promise;
}
