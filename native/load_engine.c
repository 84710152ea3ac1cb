/*
 * Load engine: an epoll connection generator run as napi async work, so
 * `load` needs no net.Socket per connection. JS function loadRun.
 *
 * UDP (options.protocol "udp") does what the JS engine's datagrams do: each
 * from its own connected socket, so from its own source port (what the
 * kernel's SO_REUSEPORT hash spreads), one ping and the first reply. A reply
 * is one recv; an ICMP error (ECONNREFUSED) is a failure; none in time is
 * "no reply" once sent (ETIMEDOUT if the send never went out).
 */
#include "addon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes kept of each reply: the first line of a greeting is well under this. */
#define LOAD_KEEP 128
#define LOAD_MAX_EVENTS 256
#define LOAD_MAX_WAIT_MS 50
#define LOAD_MAX_CONCURRENCY 1048576
/* Distinct first lines kept apart; more than that count as an empty reply. */
#define LOAD_MAX_DISTINCT 65536
/* Pseudo-errno: the connection was in flight when the run stopped early. */
#define LOAD_CUT_OFF (-1)
/* One entry per client source port: which reply it got first. */
#define LOAD_PORTS 65536
/* What each UDP datagram says; the JS engine sends the same. */
static const char LOAD_PING[] = "reuseport ping\n";

enum { LOAD_RAN_TO_END = 0, LOAD_DEADLINE = 1, LOAD_ABORTED = 2 };

typedef struct {
  int fd;        /* -1 when the slot is free */
  int len;       /* bytes kept in buf */
  int got;       /* any byte received */
  int port;      /* client source port, 0 when getsockname failed */
  int sent;      /* UDP: the ping went out */
  int prev;      /* in-flight list, ordered by deadline */
  int next;
  int64_t deadline;
  char buf[LOAD_KEEP];
} load_conn;

typedef struct {
  int used;
  int id; /* order of first appearance: stable across rehashing */
  int err;
  int len;
  uint64_t hash;
  int64_t count;
  char text[LOAD_KEEP];
} load_reply;

typedef struct {
  int err;
  int64_t count;
} load_failure;

typedef struct {
  /* Inputs, parsed on the JS thread. */
  int family;
  int udp;
  any_addr target;
  any_addr source;
  socklen_t addr_len;
  int has_source;
  int64_t connections;
  int64_t concurrency;
  int64_t reply_timeout_ns;
  int64_t deadline_ns;
  int32_t *progress; /* [0] done (written here), [1] abort flag (read here) */
  napi_ref progress_ref;
  napi_deferred deferred;
  napi_async_work work;
  /* Outputs, written by the worker thread, read in complete. */
  int64_t attempted;
  int64_t no_reply;
  int64_t elapsed_ns;
  int stopped;
  int setup_err;
  const char *setup_syscall;
  int oom;
  load_reply *replies; /* open addressing, capacity a power of two */
  size_t replies_cap;
  size_t replies_used;
  load_failure *failures;
  size_t failures_cap;
  size_t failures_used;
  /*
   * Which reply each source port got: port_first[port] is the id + 1 of its
   * first reply (0: none yet). A port that later gets a different reply (the
   * group changed mid-run) goes into port_extra, a set of (port << 32 | id + 1).
   */
  uint32_t *port_first;
  size_t ports_used;
  uint64_t *port_extra;
  size_t extra_cap;
  size_t extra_used;
} load_job;

typedef struct {
  load_job *job;
  int ep;
  load_conn *conns;
  int *free_slots;
  int nfree;
  int inflight;
  int head; /* earliest deadline */
  int tail;
  int64_t done;
  int64_t now;
  char scratch[4096];
} load_state;

int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t load_hash(const char *text, int len, int err) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (int i = 0; i < len; i++) {
    h ^= (unsigned char)text[i];
    h *= 1099511628211ULL;
  }
  return h ^ ((uint64_t)(uint32_t)err * 0x9E3779B97F4A7C15ULL);
}

static load_reply *load_reply_slot(load_reply *table, size_t cap, uint64_t hash, const char *text, int len,
                                   int err) {
  size_t i = (size_t)hash & (cap - 1);
  while (table[i].used) {
    load_reply *r = &table[i];
    if (r->hash == hash && r->err == err && r->len == len && memcmp(r->text, text, (size_t)len) == 0) return r;
    i = (i + 1) & (cap - 1);
  }
  return &table[i];
}

/* Returns the reply's id, or -1 when out of memory. */
static int load_record_reply(load_job *j, const char *text, int len, int err) {
  uint64_t hash;
  load_reply *r;
  if (j->replies_used >= LOAD_MAX_DISTINCT) len = 0; /* pathological server: stop telling lines apart */
  hash = load_hash(text, len, err);
  if ((j->replies_used + 1) * 4 > j->replies_cap * 3) {
    size_t cap = j->replies_cap ? j->replies_cap * 2 : 16;
    load_reply *table = calloc(cap, sizeof(*table));
    if (table == NULL) {
      j->oom = 1;
      return -1;
    }
    for (size_t i = 0; i < j->replies_cap; i++) {
      if (j->replies[i].used) {
        load_reply *old = &j->replies[i];
        *load_reply_slot(table, cap, old->hash, old->text, old->len, old->err) = *old;
      }
    }
    free(j->replies);
    j->replies = table;
    j->replies_cap = cap;
  }
  r = load_reply_slot(j->replies, j->replies_cap, hash, text, len, err);
  if (!r->used) {
    r->used = 1;
    r->id = (int)j->replies_used;
    r->err = err;
    r->len = len;
    r->hash = hash;
    memcpy(r->text, text, (size_t)len);
    j->replies_used++;
  }
  r->count++;
  return r->id;
}

static uint64_t load_mix(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  return key ^ (key >> 33);
}

static void load_record_port(load_job *j, int port, int id) {
  uint32_t tag = (uint32_t)id + 1;
  uint64_t key;
  size_t i;
  if (port <= 0 || id < 0) return;
  if (j->port_first == NULL && (j->port_first = calloc(LOAD_PORTS, sizeof(*j->port_first))) == NULL) {
    j->oom = 1;
    return;
  }
  if (j->port_first[port] == 0) {
    j->port_first[port] = tag;
    j->ports_used++;
    return;
  }
  if (j->port_first[port] == tag) return;
  key = ((uint64_t)(uint32_t)port << 32) | tag; /* never 0: tag >= 1 */
  if ((j->extra_used + 1) * 2 > j->extra_cap) {
    size_t cap = j->extra_cap ? j->extra_cap * 2 : 64;
    uint64_t *table = calloc(cap, sizeof(*table));
    if (table == NULL) {
      j->oom = 1;
      return;
    }
    for (size_t k = 0; k < j->extra_cap; k++) {
      if (j->port_extra[k] == 0) continue;
      i = (size_t)load_mix(j->port_extra[k]) & (cap - 1);
      while (table[i] != 0) i = (i + 1) & (cap - 1);
      table[i] = j->port_extra[k];
    }
    free(j->port_extra);
    j->port_extra = table;
    j->extra_cap = cap;
  }
  i = (size_t)load_mix(key) & (j->extra_cap - 1);
  while (j->port_extra[i] != 0) {
    if (j->port_extra[i] == key) return;
    i = (i + 1) & (j->extra_cap - 1);
  }
  j->port_extra[i] = key;
  j->extra_used++;
}

static void load_record_failure(load_job *j, int err) {
  for (size_t i = 0; i < j->failures_used; i++) {
    if (j->failures[i].err == err) {
      j->failures[i].count++;
      return;
    }
  }
  if (j->failures_used == j->failures_cap) {
    size_t cap = j->failures_cap ? j->failures_cap * 2 : 8;
    load_failure *grown = realloc(j->failures, cap * sizeof(*grown));
    if (grown == NULL) {
      j->oom = 1;
      return;
    }
    j->failures = grown;
    j->failures_cap = cap;
  }
  j->failures[j->failures_used].err = err;
  j->failures[j->failures_used].count = 1;
  j->failures_used++;
}

static void load_unlink(load_state *s, int slot) {
  load_conn *c = &s->conns[slot];
  if (c->prev >= 0)
    s->conns[c->prev].next = c->next;
  else
    s->head = c->next;
  if (c->next >= 0)
    s->conns[c->next].prev = c->prev;
  else
    s->tail = c->prev;
  c->prev = c->next = -1;
}

static void load_append(load_state *s, int slot) {
  load_conn *c = &s->conns[slot];
  c->prev = s->tail;
  c->next = -1;
  if (s->tail >= 0)
    s->conns[s->tail].next = slot;
  else
    s->head = slot;
  s->tail = slot;
}

static void load_close(load_state *s, int slot) {
  load_conn *c = &s->conns[slot];
  close(c->fd); /* also leaves the epoll set */
  c->fd = -1;
  load_unlink(s, slot);
  s->free_slots[s->nfree++] = slot;
  s->inflight--;
  s->done++;
}

/*
 * A connection ends: with some bytes it is a reply (its first line, and the
 * error that ended it, 0 for none); without any, an error is a failure and a
 * clean EOF is an empty reply.
 */
static void load_settle(load_state *s, int slot, int err) {
  load_conn *c = &s->conns[slot];
  if (c->got || err == 0) {
    const char *nl = memchr(c->buf, '\n', (size_t)c->len);
    int id = load_record_reply(s->job, c->buf, nl ? (int)(nl - c->buf) : c->len, err);
    load_record_port(s->job, c->port, id);
  } else {
    load_record_failure(s->job, err);
  }
  load_close(s, slot);
}

static void load_fail_fd(load_state *s, int fd, int err) {
  close(fd);
  load_record_failure(s->job, err);
  s->done++;
}

static void load_launch(load_state *s) {
  load_job *j = s->job;
  struct epoll_event ev;
  load_conn *c;
  any_addr local;
  socklen_t local_len = sizeof(local);
  int slot, err, port = 0, sent = 0;
  int fd = socket(j->family, (j->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    load_record_failure(j, errno);
    s->done++;
    return;
  }
  if (j->has_source) {
    int one = 1;
    /* TCP reuses a port left in TIME_WAIT, as net.connect({ localPort }) does; dgram binds plainly. */
    if ((!j->udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) ||
        bind(fd, &j->source.sa, j->addr_len) != 0) {
      err = errno;
      load_fail_fd(s, fd, err);
      return;
    }
  }
  /* EINTR: a non-blocking connect goes on asynchronously, like EINPROGRESS. */
  if (connect(fd, &j->target.sa, j->addr_len) != 0 && errno != EINPROGRESS && errno != EINTR) {
    err = errno;
    load_fail_fd(s, fd, err);
    return;
  }
  /* connect() has picked the source port by now, even while the handshake goes on. */
  if (getsockname(fd, &local.sa, &local_len) == 0)
    port = ntohs(local.sa.sa_family == AF_INET ? local.v4.sin_port : local.v6.sin6_port);
  if (j->udp) {
    if (send(fd, LOAD_PING, sizeof(LOAD_PING) - 1, 0) >= 0) {
      sent = 1;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != EINTR) {
      err = errno;
      load_fail_fd(s, fd, err);
      return;
    }
  }
  slot = s->free_slots[--s->nfree];
  memset(&ev, 0, sizeof(ev));
  /* Errors (refused, reset) are always reported; a ping that did not fit waits for room. */
  ev.events = j->udp ? EPOLLIN | (sent ? 0 : EPOLLOUT) : EPOLLIN | EPOLLRDHUP;
  ev.data.u32 = (uint32_t)slot;
  if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    err = errno;
    s->free_slots[s->nfree++] = slot;
    load_fail_fd(s, fd, err);
    return;
  }
  c = &s->conns[slot];
  c->fd = fd;
  c->len = 0;
  c->got = 0;
  c->port = port;
  c->sent = sent;
  c->deadline = s->now + j->reply_timeout_ns;
  load_append(s, slot);
  s->inflight++;
}

/* A datagram's socket is readable (a reply or an ICMP error) or, before its ping went out, writable. */
static void load_on_datagram(load_state *s, int slot) {
  load_conn *c = &s->conns[slot];
  ssize_t r;
  if (!c->sent) {
    if (send(c->fd, LOAD_PING, sizeof(LOAD_PING) - 1, 0) >= 0) {
      struct epoll_event ev;
      memset(&ev, 0, sizeof(ev));
      ev.events = EPOLLIN;
      ev.data.u32 = (uint32_t)slot;
      c->sent = 1;
      if (epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) load_settle(s, slot, errno);
      return;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != EINTR) load_settle(s, slot, errno);
    return;
  }
  do {
    r = recv(c->fd, c->buf, LOAD_KEEP, 0);
  } while (r < 0 && errno == EINTR);
  if (r >= 0) {
    /* One datagram is the whole reply, even an empty one. */
    c->len = (int)r;
    c->got = 1;
    load_settle(s, slot, 0);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    load_settle(s, slot, errno);
  }
}

static void load_on_event(load_state *s, int slot) {
  load_conn *c = &s->conns[slot];
  int fresh = 0;
  if (s->job->udp) {
    load_on_datagram(s, slot);
    return;
  }
  for (;;) {
    int keep = c->len < LOAD_KEEP;
    ssize_t r = recv(c->fd, keep ? c->buf + c->len : s->scratch, keep ? (size_t)(LOAD_KEEP - c->len) : sizeof(s->scratch), 0);
    if (r > 0) {
      if (keep) c->len += (int)r;
      c->got = 1;
      fresh = 1;
      continue;
    }
    if (r == 0) {
      load_settle(s, slot, 0);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    load_settle(s, slot, errno);
    return;
  }
  if (fresh) {
    /* Activity restarts the reply timeout, as socket.setTimeout does in the JS engine. */
    c->deadline = s->now + s->job->reply_timeout_ns;
    load_unlink(s, slot);
    load_append(s, slot);
  }
}

/* The reply timeout passed: never connected is ETIMEDOUT, connected and silent is "no reply". */
static void load_expire(load_state *s, int slot) {
  load_conn *c = &s->conns[slot];
  int err = 0;
  socklen_t len = sizeof(err);
  any_addr peer;
  socklen_t peer_len = sizeof(peer);
  if (s->job->udp) {
    /* Sent and unanswered is silence, as in the JS engine; never sent, a failure. */
    if (c->sent) {
      s->job->no_reply++;
      load_close(s, slot);
    } else {
      load_settle(s, slot, ETIMEDOUT);
    }
    return;
  }
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0 && getpeername(c->fd, &peer.sa, &peer_len) != 0) err = ETIMEDOUT;
  if (err == 0 && !c->got) {
    s->job->no_reply++;
    load_close(s, slot);
    return;
  }
  load_settle(s, slot, err);
}

static void load_publish(load_state *s) {
  int32_t done = s->done > INT32_MAX ? INT32_MAX : (int32_t)s->done;
  __atomic_store_n(&s->job->progress[0], done, __ATOMIC_RELEASE);
}

static int load_wait_ms(load_state *s, int64_t end) {
  int64_t until = end;
  int64_t ms;
  if (s->head >= 0 && s->conns[s->head].deadline < until) until = s->conns[s->head].deadline;
  if (until <= s->now) return 0;
  ms = (until - s->now + 999999) / 1000000;
  return ms < LOAD_MAX_WAIT_MS ? (int)ms : LOAD_MAX_WAIT_MS;
}

static void load_run(load_job *j) {
  load_state *s = calloc(1, sizeof(*s));
  struct epoll_event *events = NULL;
  int nconn = (int)j->concurrency;
  int nevents = nconn < LOAD_MAX_EVENTS ? nconn : LOAD_MAX_EVENTS;
  int64_t started = 0, t0, end;

  if (s == NULL) {
    j->setup_err = ENOMEM;
    j->setup_syscall = "calloc";
    return;
  }
  s->job = j;
  s->ep = -1;
  s->head = s->tail = -1;
  s->conns = calloc((size_t)nconn, sizeof(*s->conns));
  s->free_slots = calloc((size_t)nconn, sizeof(*s->free_slots));
  events = calloc((size_t)nevents, sizeof(*events));
  if (s->conns == NULL || s->free_slots == NULL || events == NULL) {
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
  for (int i = nconn - 1; i >= 0; i--) {
    s->conns[i].fd = -1;
    s->conns[i].prev = s->conns[i].next = -1;
    s->free_slots[s->nfree++] = i;
  }

  t0 = s->now = mono_ns();
  end = t0 + j->deadline_ns;
  for (;;) {
    int n;
    if (__atomic_load_n(&j->progress[1], __ATOMIC_ACQUIRE) != 0) {
      j->stopped = LOAD_ABORTED;
      break;
    }
    if (s->now >= end) {
      j->stopped = LOAD_DEADLINE;
      break;
    }
    while (s->inflight < nconn && started < j->connections) {
      started++;
      load_launch(s);
    }
    load_publish(s);
    if (s->inflight == 0) break; /* every connection is done */
    n = epoll_wait(s->ep, events, nevents, load_wait_ms(s, end));
    if (n < 0 && errno != EINTR) {
      int err = errno; /* cannot wait any more: what is in flight fails with the reason */
      while (s->head >= 0) load_settle(s, s->head, err);
      break;
    }
    s->now = mono_ns();
    for (int i = 0; i < n; i++) {
      int slot = (int)events[i].data.u32;
      if (s->conns[slot].fd >= 0) load_on_event(s, slot);
    }
    while (s->head >= 0 && s->conns[s->head].deadline <= s->now) load_expire(s, s->head);
  }
  j->elapsed_ns = mono_ns() - t0;
  /* Stopped early: what is still in flight is cut off. */
  while (s->head >= 0) load_settle(s, s->head, LOAD_CUT_OFF);
  j->attempted = started;
  load_publish(s);

out:
  if (s->ep >= 0) close(s->ep);
  free(events);
  free(s->conns);
  free(s->free_slots);
  free(s);
}

static void load_execute(napi_env env, void *data) {
  (void)env;
  load_run(data);
}

/* Int32Array [port, reply id, ...]: each distinct (port, reply) pair once. */
static napi_value load_source_ports(napi_env env, load_job *j) {
  size_t n = j->ports_used + j->extra_used, k = 0;
  void *data = NULL;
  int32_t *pairs;
  napi_value buffer, array;
  if (napi_create_arraybuffer(env, n * 2 * sizeof(int32_t), &data, &buffer) != napi_ok) return NULL;
  pairs = data;
  for (int port = 0; j->port_first != NULL && port < LOAD_PORTS; port++) {
    if (j->port_first[port] == 0) continue;
    pairs[k++] = port;
    pairs[k++] = (int32_t)j->port_first[port] - 1;
  }
  for (size_t i = 0; i < j->extra_cap; i++) {
    if (j->port_extra[i] == 0) continue;
    pairs[k++] = (int32_t)(j->port_extra[i] >> 32);
    pairs[k++] = (int32_t)(uint32_t)j->port_extra[i] - 1;
  }
  if (napi_create_typedarray(env, napi_int32_array, n * 2, buffer, 0, &array) != napi_ok) return NULL;
  return array;
}

static napi_value load_result(napi_env env, load_job *j) {
  napi_value out, replies, failures, item, v;
  uint32_t k = 0;
  const char *stopped = j->stopped == LOAD_DEADLINE ? "deadline" : j->stopped == LOAD_ABORTED ? "aborted" : NULL;
  if ((out = make_object(env)) == NULL) return NULL;
  if (!set_number(env, out, "attempted", (double)j->attempted)) return NULL;
  if (napi_create_array(env, &replies) != napi_ok) goto fail;
  for (size_t i = 0; i < j->replies_cap; i++) {
    load_reply *r = &j->replies[i];
    if (!r->used) continue;
    if ((item = make_object(env)) == NULL) return NULL;
    /* latin1, as the JS engine decodes replies: every byte maps to one char. */
    if (napi_create_string_latin1(env, r->text, (size_t)r->len, &v) != napi_ok) goto fail;
    if (napi_set_named_property(env, item, "text", v) != napi_ok) goto fail;
    if (!set_number(env, item, "id", r->id)) return NULL;
    if (!set_number(env, item, "errno", r->err) || !set_number(env, item, "count", (double)r->count)) return NULL;
    if (napi_set_element(env, replies, k++, item) != napi_ok) goto fail;
  }
  if (napi_set_named_property(env, out, "replies", replies) != napi_ok) goto fail;
  if (!set_number(env, out, "noReply", (double)j->no_reply)) return NULL;
  if (napi_create_array(env, &failures) != napi_ok) goto fail;
  for (size_t i = 0; i < j->failures_used; i++) {
    if ((item = make_object(env)) == NULL) return NULL;
    if (!set_number(env, item, "errno", j->failures[i].err) ||
        !set_number(env, item, "count", (double)j->failures[i].count))
      return NULL;
    if (napi_set_element(env, failures, (uint32_t)i, item) != napi_ok) goto fail;
  }
  if (napi_set_named_property(env, out, "failures", failures) != napi_ok) goto fail;
  if ((v = load_source_ports(env, j)) == NULL) goto fail;
  if (napi_set_named_property(env, out, "sourcePorts", v) != napi_ok) goto fail;
  if (!set_number(env, out, "elapsedNs", (double)j->elapsed_ns)) return NULL;
  if (stopped != NULL) {
    if (!set_string(env, out, "stoppedEarly", stopped)) return NULL;
  } else {
    if (napi_get_null(env, &v) != napi_ok || napi_set_named_property(env, out, "stoppedEarly", v) != napi_ok)
      goto fail;
  }
  return out;
fail:
  throw_last_error(env);
  return NULL;
}

static void load_job_free(load_job *j) {
  free(j->port_first);
  free(j->port_extra);
  free(j->replies);
  free(j->failures);
  free(j);
}

static void load_complete(napi_env env, napi_status status, void *data) {
  load_job *j = data;
  napi_value result = NULL;
  if (status != napi_ok) {
    napi_throw_error(env, NULL, "loadRun: the run was cancelled");
  } else if (j->setup_err != 0) {
    result = errno_object(env, j->setup_err, j->setup_syscall, NULL);
  } else if (j->oom) {
    napi_throw_error(env, NULL, "reuseport_native: out of memory");
  } else {
    result = load_result(env, j);
  }
  settle_async_work(env, j->deferred, j->work, result, "loadRun failed");
  napi_delete_reference(env, j->progress_ref);
  load_job_free(j);
}

int read_address(napi_env env, napi_value obj, int family, any_addr *addr, socklen_t *len) {
  napi_value v;
  int present;
  size_t n = 0;
  char text[ADDRESS_MAX];
  const char *msg = "options.host must be an IP literal of options.family";
  if (!get_prop(env, obj, "host", &v, &present)) return 0;
  if (!present) return throw_type(env, msg);
  if (!expect_type(env, v, napi_string, msg)) return 0;
  NAPI_OK(env, napi_get_value_string_utf8(env, v, NULL, 0, &n));
  if (n >= sizeof(text)) return throw_range(env, msg);
  NAPI_OK(env, napi_get_value_string_utf8(env, v, text, sizeof(text), &n));
  if (strlen(text) != n) return throw_range(env, msg);
  memset(addr, 0, sizeof(*addr));
  if (family == AF_INET) {
    addr->v4.sin_family = AF_INET;
    if (inet_pton(AF_INET, text, &addr->v4.sin_addr) != 1) return throw_range(env, msg);
    *len = sizeof(addr->v4);
  } else {
    addr->v6.sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, text, &addr->v6.sin6_addr) != 1) return throw_range(env, msg);
    *len = sizeof(addr->v6);
  }
  return 1;
}

void set_port(any_addr *addr, int port) {
  if (addr->sa.sa_family == AF_INET)
    addr->v4.sin_port = htons((uint16_t)port);
  else
    addr->v6.sin6_port = htons((uint16_t)port);
}

static int parse_load_opts(napi_env env, napi_value obj, load_job *j) {
  int64_t n;
  napi_value v;
  int present;
  if (!expect_type(env, obj, napi_object, "loadRun(options, progress): options must be an object")) return 0;
  if (!get_prop(env, obj, "protocol", &v, &present)) return 0;
  if (present) {
    char protocol[4];
    size_t len = 0;
    const char *msg = "options.protocol must be \"tcp\" or \"udp\"";
    if (!expect_type(env, v, napi_string, msg)) return 0;
    NAPI_OK(env, napi_get_value_string_utf8(env, v, NULL, 0, &len));
    if (len != 3) return throw_range(env, msg);
    NAPI_OK(env, napi_get_value_string_utf8(env, v, protocol, sizeof(protocol), &len));
    if (strcmp(protocol, "tcp") != 0 && strcmp(protocol, "udp") != 0) return throw_range(env, msg);
    j->udp = protocol[0] == 'u';
  }
  if (!read_int_prop(env, obj, "family", 4, 6, &n, "options.family must be 4 or 6")) return 0;
  if (n == 5) return throw_range(env, "options.family must be 4 or 6");
  j->family = n == 4 ? AF_INET : AF_INET6;
  if (!read_address(env, obj, j->family, &j->target, &j->addr_len)) return 0;
  if (!read_int_prop(env, obj, "port", 0, 65535, &n, "options.port must be an integer in 0..65535")) return 0;
  set_port(&j->target, (int)n);
  if (!read_int_prop(env, obj, "connections", 1, 2147483647.0, &j->connections,
                     "options.connections must be an integer in 1..2147483647"))
    return 0;
  if (!read_int_prop(env, obj, "concurrency", 1, LOAD_MAX_CONCURRENCY, &j->concurrency,
                     "options.concurrency must be an integer in 1..1048576"))
    return 0;
  if (j->concurrency > j->connections) j->concurrency = j->connections;
  if (!read_int_prop(env, obj, "replyTimeoutMs", 1, 2147483647.0, &n,
                     "options.replyTimeoutMs must be an integer in 1..2147483647"))
    return 0;
  j->reply_timeout_ns = n * 1000000LL;
  if (!read_int_prop(env, obj, "deadlineMs", 0, 1e12, &n, "options.deadlineMs must be an integer in 0..1e12")) return 0;
  j->deadline_ns = n * 1000000LL;
  if (!get_prop(env, obj, "sourcePort", &v, &present)) return 0;
  if (present) {
    if (!read_int(env, v, 0, 65535, &n, "options.sourcePort must be an integer in 0..65535")) return 0;
    if (j->concurrency != 1) return throw_range(env, "options.sourcePort needs options.concurrency 1");
    /* The wildcard address of the family, as net.connect({ localPort }) binds. */
    memset(&j->source, 0, sizeof(j->source));
    j->source.sa.sa_family = (sa_family_t)j->family;
    if (j->family == AF_INET) j->source.v4.sin_addr.s_addr = htonl(INADDR_ANY);
    set_port(&j->source, (int)n);
    j->has_source = 1;
  }
  return 1;
}

/* loadRun(options, progress: Int32Array) -> Promise<result | { errno, syscall }> */
napi_value js_load_run(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  napi_value promise;
  bool is_typed = false;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  load_job *j;
  const char *progress_msg = "loadRun(options, progress): progress must be an Int32Array of length >= 2";

  if (!get_args(env, info, 2, argv)) return NULL;
  j = calloc(1, sizeof(*j));
  if (j == NULL) {
    napi_throw_error(env, NULL, "reuseport_native: out of memory");
    return NULL;
  }
  if (!parse_load_opts(env, argv[0], j)) goto fail;
  if (napi_is_typedarray(env, argv[1], &is_typed) != napi_ok) goto napi_fail;
  if (!is_typed) {
    throw_type(env, progress_msg);
    goto fail;
  }
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok) goto napi_fail;
  if (type != napi_int32_array || length < 2 || data == NULL) {
    throw_type(env, progress_msg);
    goto fail;
  }
  j->progress = data;
  /* Keeps the array (and so its memory) alive while the worker thread writes to it. */
  if (napi_create_reference(env, argv[1], 1, &j->progress_ref) != napi_ok) goto napi_fail;
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok) goto napi_fail;
  if (!queue_async_work(env, "reuseport:loadRun", load_execute, load_complete, j, j->deferred, &j->work,
                        "loadRun: cannot queue the work")) {
    napi_delete_reference(env, j->progress_ref);
    load_job_free(j);
  }
  return promise;

napi_fail:
  throw_last_error(env);
fail:
  if (j->progress_ref != NULL) napi_delete_reference(env, j->progress_ref);
  load_job_free(j);
  return NULL;
}
