/*
 * Accept loop: one thread per listening fd that accepts, counts, sends a fixed
 * greeting and closes, with no JS per connection. JS functions
 * acceptLoopStart, acceptLoopCount, acceptLoopErrors and acceptLoopStop.
 * Given a bound datagram socket instead, the thread receives, counts and
 * answers each datagram with the greeting, in batches (recvmmsg + sendmmsg),
 * as a dgram worker does one by one.
 *
 * The count can live in a file the caller hands over (a MAP_SHARED mapping of
 * its first 8 bytes): a parent holding the same file reads the exact count
 * even after this process is SIGKILLed, when no message can say it any more.
 */
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define ACCEPT_LOOPS_MAX 64
/* Accepts per wakeup before looking at the stop eventfd again. */
#define ACCEPT_BATCH 256
/* Pause after EMFILE/ENFILE/ENOBUFS/ENOMEM or an unexpected error: never spin. */
#define ACCEPT_BACKOFF_MS 5
#define ACCEPT_STACK_SIZE (256 * 1024)
#define GREETING_MAX 65536
/* Datagrams per recvmmsg / sendmmsg. */
#define DATAGRAM_BATCH 64
#define EV_LISTEN 0u
#define EV_STOP 1u
#define ACCEPT_THREAD_NAME "rp-accept"
/*
 * A TCP loop blocks in accept4() itself, as a plain C server does: no
 * epoll_wait() and no accept4() that ends in EAGAIN per wakeup (two of the
 * five syscalls a connection costs when they come one at a time). The
 * listener's SO_RCVTIMEO makes that accept4() return every so often to look
 * for a stop request: the most a stop waits.
 */
#define ACCEPT_WAKE_MS 50

/* Another process reads the shared counter: it must be a plain lock-free 8-byte word. */
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && sizeof(unsigned long) == 8, "the shared counter needs lock-free 64-bit atomics");
typedef _Atomic unsigned long shared_count;

typedef struct {
  int listen_fd; /* not ours: the caller closes it after stop */
  int epoll_fd;
  int event_fd;
  pthread_t thread;
  /* Points at own_accepted, or into the caller's counter file (then mapped is non-NULL). */
  shared_count *accepted;
  shared_count own_accepted;
  void *mapped;
  atomic_uint_fast64_t errors;
  uint8_t *greeting;
  size_t greeting_len;
  int datagram; /* a SOCK_DGRAM socket: answer datagrams instead of accepting */
  /* Send back, after the greeting, what the client had sent by accept time (scenario lifecycle workers). */
  int echo;
  atomic_int stop; /* set before the eventfd is written: the blocking accept loop looks at this */
  int restored; /* 0 while the listener is in the blocking loop's state */
  int restore_flags; /* the listener's file flags and SO_RCVTIMEO before the loop changed them */
  struct timeval restore_timeout;
  napi_env env;
} accept_loop;

/*
 * Handles are plain numbers: generation * ACCEPT_LOOPS_MAX + slot + 1. A
 * stopped slot keeps its final counts until a later start reuses it, so a
 * second stop returns the same count; a stale handle is a TypeError.
 */
typedef struct {
  uint64_t handle; /* 0: never used */
  uint64_t generation;
  accept_loop *loop; /* NULL once stopped */
  uint64_t final_accepted;
  uint64_t final_errors;
} accept_slot;

static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;
static accept_slot accept_slots[ACCEPT_LOOPS_MAX];

/* Waits up to ACCEPT_BACKOFF_MS for a stop request; returns 1 if one came. */
static int accept_backoff(accept_loop *l) {
  struct pollfd p = {l->event_fd, POLLIN, 0};
  int n = poll(&p, 1, ACCEPT_BACKOFF_MS);
  return n > 0 && (p.revents & POLLIN) != 0;
}

/* Waits up to ACCEPT_BACKOFF_MS for room to send (or a stop request); returns 1 if a stop came. */
static int datagram_wait_writable(accept_loop *l) {
  struct pollfd p[2] = {{l->listen_fd, POLLOUT, 0}, {l->event_fd, POLLIN, 0}};
  int n = poll(p, 2, ACCEPT_BACKOFF_MS);
  return n > 0 && (p[1].revents & POLLIN) != 0;
}

/*
 * Receives what is queued (or a batch of batches), counts it, and answers
 * every datagram with the greeting. Counted before the replies go out, as the
 * dgram worker counts before it sends: whoever got a reply is counted.
 * Returns 1 if a stop was seen while waiting.
 */
static int datagram_drain(accept_loop *l) {
  struct mmsghdr in[DATAGRAM_BATCH], out[DATAGRAM_BATCH];
  struct sockaddr_storage peers[DATAGRAM_BATCH];
  struct iovec sink, reply;
  uint8_t byte;
  sink.iov_base = &byte; /* the request's content does not matter: it is truncated away */
  sink.iov_len = sizeof(byte);
  reply.iov_base = l->greeting;
  reply.iov_len = l->greeting_len;
  for (int round = 0; round < ACCEPT_BATCH / DATAGRAM_BATCH; round++) {
    int n, sent = 0;
    memset(in, 0, sizeof(in));
    for (int i = 0; i < DATAGRAM_BATCH; i++) {
      in[i].msg_hdr.msg_name = &peers[i];
      in[i].msg_hdr.msg_namelen = sizeof(peers[i]);
      in[i].msg_hdr.msg_iov = &sink;
      in[i].msg_hdr.msg_iovlen = 1;
    }
    n = recvmmsg(l->listen_fd, in, DATAGRAM_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (errno == EINTR) continue;
      atomic_fetch_add(&l->errors, 1);
      /* A queued ICMP error is consumed by this call: try again at once. Anything else: back off. */
      if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) continue;
      return accept_backoff(l);
    }
    atomic_fetch_add(l->accepted, (unsigned long)n);
    memset(out, 0, sizeof(out[0]) * (size_t)n);
    for (int i = 0; i < n; i++) {
      out[i].msg_hdr.msg_name = &peers[i];
      out[i].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
      out[i].msg_hdr.msg_iov = &reply;
      out[i].msg_hdr.msg_iovlen = 1;
    }
    while (sent < n) {
      int w = sendmmsg(l->listen_fd, out + sent, (unsigned)(n - sent), MSG_DONTWAIT);
      if (w > 0) {
        sent += w;
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
        /* The send buffer is full: wait for room, as dgram queues its sends. */
        if (datagram_wait_writable(l)) return 1;
      } else {
        /* This peer cannot be answered (e.g. an unroutable source): skip it, as a failed dgram send is. */
        atomic_fetch_add(&l->errors, 1);
        sent++;
      }
    }
    if (n < DATAGRAM_BATCH) return 0;
  }
  return 0;
}

/* One connection: counted once accepted, before the greeting, so a client that has read it is always counted. */
static void accept_serve_one(accept_loop *l, int fd) {
  atomic_fetch_add(l->accepted, 1);
  if (l->echo) {
    /* Read before close: unread bytes would turn our FIN into a RST (tcp_close()). */
    uint8_t echoed[4096];
    ssize_t got = recv(fd, echoed, sizeof(echoed), MSG_DONTWAIT);
    if (l->greeting_len > 0) {
      ssize_t w = send(fd, l->greeting, l->greeting_len, MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)w; /* best effort: a peer that left is not an error */
    }
    if (got > 0) {
      ssize_t w = send(fd, echoed, (size_t)got, MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)w;
    }
  } else if (l->greeting_len > 0) {
    ssize_t w = send(fd, l->greeting, l->greeting_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w; /* best effort: a peer that left is not an error */
  }
  close(fd);
}

static void *accept_blocking_thread(void *arg) {
  accept_loop *l = arg;
  while (!atomic_load(&l->stop)) {
    int fd = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_serve_one(l, fd);
      continue;
    }
    switch (errno) {
    case EAGAIN: /* SO_RCVTIMEO passed: look at the stop flag */
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EINTR:
      continue;
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case ENETUNREACH:
      atomic_fetch_add(&l->errors, 1);
      continue;
    default: /* EMFILE, ENFILE, ENOBUFS, ENOMEM, or a broken listening fd */
      atomic_fetch_add(&l->errors, 1);
      if (accept_backoff(l)) return NULL;
    }
  }
  return NULL;
}

/* A datagram loop waits in epoll for datagrams or the stop eventfd. */
static void *datagram_thread(void *arg) {
  accept_loop *l = arg;
  struct epoll_event events[2];
  for (;;) {
    int n = epoll_wait(l->epoll_fd, events, 2, -1);
    int listen_ready = 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      atomic_fetch_add(&l->errors, 1);
      if (accept_backoff(l)) return NULL;
      continue;
    }
    for (int i = 0; i < n; i++) {
      if (events[i].data.u32 == EV_STOP) return NULL;
      listen_ready = 1;
    }
    if (listen_ready && datagram_drain(l)) return NULL;
  }
}

/* Hands the listener back with the flags and SO_RCVTIMEO the blocking loop changed. Idempotent. */
static void accept_restore_listener(accept_loop *l) {
  if (l->restored) return;
  l->restored = 1;
  (void)fcntl(l->listen_fd, F_SETFL, l->restore_flags);
  (void)setsockopt(l->listen_fd, SOL_SOCKET, SO_RCVTIMEO, &l->restore_timeout, sizeof(l->restore_timeout));
}

static void accept_loop_free(accept_loop *l) {
  if (l == NULL) return;
  accept_restore_listener(l);
  if (l->epoll_fd >= 0) close(l->epoll_fd);
  if (l->event_fd >= 0) close(l->event_fd);
  if (l->mapped != NULL) munmap(l->mapped, sizeof(shared_count));
  free(l->greeting);
  free(l);
}

/* Stops and frees the loop of a running slot. Call with accept_lock held. */
static void accept_slot_halt(accept_slot *slot) {
  accept_loop *l = slot->loop;
  uint64_t one = 1;
  ssize_t w;
  atomic_store(&l->stop, 1);
  do {
    w = write(l->event_fd, &one, sizeof(one));
  } while (w < 0 && errno == EINTR);
  /* The eventfd counter cannot overflow from one write; the thread only ever waits on it. */
  pthread_join(l->thread, NULL);
  slot->final_accepted = atomic_load(l->accepted);
  slot->final_errors = atomic_load(&l->errors);
  slot->loop = NULL;
  accept_loop_free(l);
}

/* Environment teardown (e.g. a worker_thread ending) stops its loops. */
static void accept_loop_cleanup_hook(void *arg) {
  pthread_mutex_lock(&accept_lock);
  for (int i = 0; i < ACCEPT_LOOPS_MAX; i++) {
    if (accept_slots[i].loop == arg) {
      accept_slot_halt(&accept_slots[i]);
      break;
    }
  }
  pthread_mutex_unlock(&accept_lock);
}

/* Finds the slot of a handle. Call with accept_lock held; NULL if unknown. */
static accept_slot *accept_slot_of(int64_t handle) {
  accept_slot *slot;
  if (handle < 1) return NULL;
  slot = &accept_slots[(handle - 1) % ACCEPT_LOOPS_MAX];
  return slot->handle == (uint64_t)handle ? slot : NULL;
}

static int read_handle(napi_env env, napi_callback_info info, int64_t *handle, const char *message) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return 0;
  return read_int(env, argv[0], 1, 9007199254740991.0, handle, message);
}

static napi_value accept_fail(napi_env env, accept_loop *l, int err, const char *syscall, const char *option) {
  accept_loop_free(l);
  return errno_object(env, err, syscall, option);
}

/*
 * Counts into the first 8 bytes of the file open at counter_fd (host byte
 * order, added to what is there). The file must already be that long: a
 * mapping past its end would SIGBUS on the first accept.
 */
static int accept_map_counter(accept_loop *l, int counter_fd, const char **syscall) {
  struct stat st;
  void *mapped;
  if (fstat(counter_fd, &st) != 0) {
    *syscall = "fstat";
    return errno;
  }
  if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(shared_count)) {
    *syscall = "mmap";
    return EINVAL;
  }
  mapped = mmap(NULL, sizeof(shared_count), PROT_READ | PROT_WRITE, MAP_SHARED, counter_fd, 0);
  if (mapped == MAP_FAILED) {
    *syscall = "mmap";
    return errno;
  }
  l->mapped = mapped;
  l->accepted = mapped;
  return 0;
}

/* acceptLoopStart(fd, greeting, counterFd?, echo?) -> handle | { errno, syscall, option? } */
napi_value js_accept_loop_start(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  napi_value out;
  napi_valuetype counter_type, echo_type;
  bool echo = false;
  int64_t fd, counter_fd = -1;
  const char *map_syscall = NULL;
  const uint8_t *bytes = NULL;
  size_t len = 0;
  int listening = 0, type = 0, flags, rc, slot_index = -1;
  socklen_t optlen = sizeof(listening), typelen = sizeof(type);
  accept_loop *l;
  struct epoll_event ev;
  pthread_attr_t attr;
  sigset_t all, old;
  accept_slot *slot;
  uint64_t handle;

  if (!get_args(env, info, 4, argv)) return NULL;
  if (!read_int(env, argv[0], 0, 2147483647.0, &fd, "acceptLoopStart(fd, greeting): fd must be an integer >= 0"))
    return NULL;
  if (!read_bytes(env, argv[1], &bytes, &len, "acceptLoopStart(fd, greeting): greeting must be a Buffer"))
    return NULL;
  if (napi_typeof(env, argv[2], &counter_type) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  if (counter_type != napi_undefined &&
      !read_int(env, argv[2], 0, 2147483647.0, &counter_fd,
                "acceptLoopStart(fd, greeting, counterFd): counterFd must be an integer >= 0"))
    return NULL;
  if (napi_typeof(env, argv[3], &echo_type) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  if (echo_type == napi_boolean) {
    if (napi_get_value_bool(env, argv[3], &echo) != napi_ok) {
      throw_last_error(env);
      return NULL;
    }
  } else if (echo_type != napi_undefined) {
    throw_type(env, "acceptLoopStart(fd, greeting, counterFd, echo): echo must be a boolean");
    return NULL;
  }
  if (len > GREETING_MAX) {
    throw_range(env, "acceptLoopStart(fd, greeting): greeting is longer than 65536 bytes");
    return NULL;
  }

  l = calloc(1, sizeof(*l));
  if (l == NULL) return errno_object(env, ENOMEM, "calloc", NULL);
  l->listen_fd = (int)fd;
  l->epoll_fd = -1;
  l->event_fd = -1;
  l->env = env;
  atomic_init(&l->own_accepted, 0);
  l->accepted = &l->own_accepted;
  atomic_init(&l->errors, 0);
  atomic_init(&l->stop, 0);
  l->restored = 1; /* nothing to put back until the blocking loop's state is set */
  l->greeting = malloc(len ? len : 1);
  if (l->greeting == NULL) return accept_fail(env, l, ENOMEM, "malloc", NULL);
  if (len) memcpy(l->greeting, bytes, len);
  l->greeting_len = len;
  l->echo = echo ? 1 : 0;
  if (counter_fd >= 0) {
    rc = accept_map_counter(l, (int)counter_fd, &map_syscall);
    if (rc != 0) return accept_fail(env, l, rc, map_syscall, NULL);
  }

  /* A listening stream socket, or a bound datagram socket; anything else would never become readable as expected. */
  if (getsockopt(l->listen_fd, SOL_SOCKET, SO_TYPE, &type, &typelen) != 0)
    return accept_fail(env, l, errno, "getsockopt", "SO_TYPE");
  l->datagram = type == SOCK_DGRAM;
  if (!l->datagram) {
    if (getsockopt(l->listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) != 0)
      return accept_fail(env, l, errno, "getsockopt", "SO_ACCEPTCONN");
    if (!listening) return accept_fail(env, l, EINVAL, "accept4", NULL);
  }
  flags = fcntl(l->listen_fd, F_GETFL);
  if (flags < 0) return accept_fail(env, l, errno, "fcntl", NULL);
  if (l->datagram) {
    /* recvmmsg() until EAGAIN needs a non-blocking fd. */
    if (!(flags & O_NONBLOCK) && fcntl(l->listen_fd, F_SETFL, flags | O_NONBLOCK) != 0)
      return accept_fail(env, l, errno, "fcntl", NULL);
  } else {
    /* A blocking accept4() that wakes up every ACCEPT_WAKE_MS; put back at stop. */
    struct timeval wake = {0, ACCEPT_WAKE_MS * 1000};
    socklen_t tlen = sizeof(l->restore_timeout);
    if (getsockopt(l->listen_fd, SOL_SOCKET, SO_RCVTIMEO, &l->restore_timeout, &tlen) != 0)
      return accept_fail(env, l, errno, "getsockopt", "SO_RCVTIMEO");
    if (setsockopt(l->listen_fd, SOL_SOCKET, SO_RCVTIMEO, &wake, sizeof(wake)) != 0)
      return accept_fail(env, l, errno, "setsockopt", "SO_RCVTIMEO");
    l->restore_flags = flags;
    l->restored = 0; /* from here on, any failure or the stop puts both back */
    if ((flags & O_NONBLOCK) && fcntl(l->listen_fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
      return accept_fail(env, l, errno, "fcntl", NULL);
  }

  l->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l->event_fd < 0) return accept_fail(env, l, errno, "eventfd", NULL);
  l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epoll_fd < 0) return accept_fail(env, l, errno, "epoll_create1", NULL);
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.u32 = EV_LISTEN;
  if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->listen_fd, &ev) != 0) return accept_fail(env, l, errno, "epoll_ctl", NULL);
  ev.data.u32 = EV_STOP;
  if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->event_fd, &ev) != 0) return accept_fail(env, l, errno, "epoll_ctl", NULL);

  pthread_mutex_lock(&accept_lock);
  for (int i = 0; i < ACCEPT_LOOPS_MAX && slot_index < 0; i++)
    if (accept_slots[i].handle == 0) slot_index = i;
  for (int i = 0; i < ACCEPT_LOOPS_MAX && slot_index < 0; i++)
    if (accept_slots[i].loop == NULL) slot_index = i;
  if (slot_index < 0) {
    pthread_mutex_unlock(&accept_lock);
    accept_loop_free(l);
    napi_throw_error(env, NULL, "acceptLoopStart: too many accept loops in this process (64)");
    return NULL;
  }

  /* The thread takes no signals: they stay with Node's own threads. */
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, ACCEPT_STACK_SIZE);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&l->thread, &attr, l->datagram ? datagram_thread : accept_blocking_thread, l);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    pthread_mutex_unlock(&accept_lock);
    return accept_fail(env, l, rc, "pthread_create", NULL);
  }
  /* Named here, before the handle exists: whoever can see the loop sees its name. Only ENAMETOOLONG can fail. */
  (void)pthread_setname_np(l->thread, ACCEPT_THREAD_NAME);
  slot = &accept_slots[slot_index];
  slot->generation++;
  slot->handle = slot->generation * ACCEPT_LOOPS_MAX + (uint64_t)slot_index + 1;
  slot->loop = l;
  slot->final_accepted = 0;
  slot->final_errors = 0;
  handle = slot->handle;
  napi_add_env_cleanup_hook(env, accept_loop_cleanup_hook, l);
  pthread_mutex_unlock(&accept_lock);

  if (napi_create_double(env, (double)handle, &out) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return out;
}

/* acceptLoopCount(handle) / acceptLoopErrors(handle) -> number. Cheap: a lock and an atomic read. */
static napi_value accept_loop_read(napi_env env, napi_callback_info info, int errors) {
  int64_t handle;
  accept_slot *slot;
  uint64_t value = 0;
  int known;
  napi_value out;
  if (!read_handle(env, info, &handle, "acceptLoop handle must be an integer >= 1")) return NULL;
  pthread_mutex_lock(&accept_lock);
  slot = accept_slot_of(handle);
  known = slot != NULL;
  if (known && slot->loop != NULL)
    value = errors ? atomic_load(&slot->loop->errors) : atomic_load(slot->loop->accepted);
  else if (known)
    value = errors ? slot->final_errors : slot->final_accepted;
  pthread_mutex_unlock(&accept_lock);
  if (!known) {
    throw_type(env, "acceptLoop: unknown handle");
    return NULL;
  }
  if (napi_create_double(env, (double)value, &out) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return out;
}

napi_value js_accept_loop_count(napi_env env, napi_callback_info info) {
  return accept_loop_read(env, info, 0);
}

napi_value js_accept_loop_errors(napi_env env, napi_callback_info info) {
  return accept_loop_read(env, info, 1);
}

/* acceptLoopStop(handle) -> final count. Leaves the listening fd open. Again: the same count. */
napi_value js_accept_loop_stop(napi_env env, napi_callback_info info) {
  int64_t handle;
  accept_slot *slot;
  accept_loop *l;
  uint64_t value = 0;
  const char *problem = NULL;
  napi_value out;
  if (!read_handle(env, info, &handle, "acceptLoopStop(handle): handle must be an integer >= 1")) return NULL;
  pthread_mutex_lock(&accept_lock);
  slot = accept_slot_of(handle);
  if (slot == NULL) {
    problem = "acceptLoopStop: unknown handle";
  } else if (slot->loop != NULL && slot->loop->env != env) {
    problem = "acceptLoopStop: the loop belongs to another thread";
  } else {
    l = slot->loop;
    if (l != NULL) {
      napi_remove_env_cleanup_hook(env, accept_loop_cleanup_hook, l);
      accept_slot_halt(slot);
    }
    value = slot->final_accepted;
  }
  pthread_mutex_unlock(&accept_lock);
  if (problem != NULL) {
    throw_type(env, problem);
    return NULL;
  }
  if (napi_create_double(env, (double)value, &out) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return out;
}
