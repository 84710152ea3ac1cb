/*
 * reuseport_native: a tiny N-API helper that opens and binds sockets with the
 * options Node < 22.12 cannot set (SO_REUSEPORT, SO_INCOMING_CPU,
 * SO_ATTACH_REUSEPORT_CBPF), and adjusts RLIMIT_NOFILE.
 *
 * It also carries two optional fast paths (JS keeps a fallback for both):
 * - an accept loop: a thread that accepts on a listening fd, counts, sends a
 *   fixed greeting and closes, so `serve` allocates nothing per connection;
 * - a load engine: an epoll connection generator run as async work, so `load`
 *   needs no net.Socket per connection.
 *
 * Plain C against node_api.h (NAPI_VERSION 8): one binary loads on every Node
 * release that supports Node-API 8 (Node >= 12.22 / 14.17 / 16, 20, 22, 24).
 *
 * Failed syscalls never throw: they come back as { errno, syscall } with a
 * positive errno, after any fd we opened has been closed. Only programmer
 * errors (wrong argument types or ranges) throw a TypeError / RangeError.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <math.h>
#include <netinet/in.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_INCOMING_CPU
#define SO_INCOMING_CPU 49
#endif
#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

#define DEFAULT_BACKLOG 511
#define MAX_SOCKOPT_STEPS 8
/* Room for the longest IPv6 literal; longer strings are an inet_pton failure. */
#define ADDRESS_MAX 64
/* struct sock_fprog.len is an unsigned short. */
#define CBPF_MAX_LEN 65535

/* ------------------------------------------------------------------------ */
/* Plain C: option record, sockopt plan, open/bind/listen.                   */
/* ------------------------------------------------------------------------ */

typedef struct {
  int family; /* AF_INET or AF_INET6 */
  int type;   /* SOCK_STREAM or SOCK_DGRAM */
  char address[ADDRESS_MAX];
  int address_too_long;
  uint16_t port;
  int reuse_addr; /* 0 or 1, always applied */
  int reuse_port; /* 0 or 1, always applied */
  int has_v6only;
  int v6only;
  int backlog;
  int has_incoming_cpu;
  int incoming_cpu;
  int has_cbpf;
  struct sock_fprog cbpf; /* cbpf.filter is malloc'd; freed by free_open_opts */
} open_opts;

/* One setsockopt() call. `value` points into the open_opts record. */
typedef struct {
  const char *name;
  int level;
  int optname;
  const void *value;
  socklen_t len;
} sockopt_step;

typedef struct {
  int fd;              /* >= 0 on success */
  int err;             /* positive errno on failure */
  const char *syscall; /* failing call */
  const char *option;  /* failing socket option, for setsockopt */
} open_result;

/*
 * The ordered list of socket options to apply before bind(). New options go
 * here: add a field to open_opts, parse it in parse_open_opts, append a step.
 */
static size_t plan_sockopts(const open_opts *o, sockopt_step *steps) {
  size_t n = 0;
  steps[n++] = (sockopt_step){"SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR, &o->reuse_addr, sizeof(int)};
  steps[n++] = (sockopt_step){"SO_REUSEPORT", SOL_SOCKET, SO_REUSEPORT, &o->reuse_port, sizeof(int)};
  if (o->family == AF_INET6 && o->has_v6only)
    steps[n++] = (sockopt_step){"IPV6_V6ONLY", IPPROTO_IPV6, IPV6_V6ONLY, &o->v6only, sizeof(int)};
  if (o->has_incoming_cpu)
    steps[n++] = (sockopt_step){"SO_INCOMING_CPU", SOL_SOCKET, SO_INCOMING_CPU, &o->incoming_cpu, sizeof(int)};
  /* Attaching needs SO_REUSEPORT already set on an unbound socket: keep it after. */
  if (o->has_cbpf)
    steps[n++] = (sockopt_step){"SO_ATTACH_REUSEPORT_CBPF", SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &o->cbpf,
                                sizeof(o->cbpf)};
  return n;
}

static open_result open_failure(int fd, int err, const char *syscall, const char *option) {
  open_result r = {-1, err, syscall, option};
  if (fd >= 0) close(fd); /* err was saved by the caller before this close */
  return r;
}

static open_result open_bound_socket(const open_opts *o) {
  union {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } addr;
  socklen_t addr_len;
  sockopt_step steps[MAX_SOCKOPT_STEPS];
  size_t nsteps, i;
  int fd;

  /* Parse the address first: a bad literal then costs no fd at all. */
  memset(&addr, 0, sizeof(addr));
  if (o->family == AF_INET) {
    addr.v4.sin_family = AF_INET;
    addr.v4.sin_port = htons(o->port);
    addr_len = sizeof(addr.v4);
    if (o->address_too_long || inet_pton(AF_INET, o->address, &addr.v4.sin_addr) != 1)
      return open_failure(-1, EINVAL, "inet_pton", NULL);
  } else {
    addr.v6.sin6_family = AF_INET6;
    addr.v6.sin6_port = htons(o->port);
    addr_len = sizeof(addr.v6);
    if (o->address_too_long || inet_pton(AF_INET6, o->address, &addr.v6.sin6_addr) != 1)
      return open_failure(-1, EINVAL, "inet_pton", NULL);
  }

  fd = socket(o->family, o->type | SOCK_CLOEXEC, 0);
  if (fd < 0) return open_failure(-1, errno, "socket", NULL);

  nsteps = plan_sockopts(o, steps);
  for (i = 0; i < nsteps; i++) {
    if (setsockopt(fd, steps[i].level, steps[i].optname, steps[i].value, steps[i].len) != 0)
      return open_failure(fd, errno, "setsockopt", steps[i].name);
  }

  if (bind(fd, &addr.sa, addr_len) != 0) return open_failure(fd, errno, "bind", NULL);
  if (o->type == SOCK_STREAM && listen(fd, o->backlog) != 0) return open_failure(fd, errno, "listen", NULL);

  /* Left blocking on purpose: libuv's uv_tcp_open / uv_udp_open set O_NONBLOCK on adoption. */
  open_result ok = {fd, 0, NULL, NULL};
  return ok;
}

static void free_open_opts(open_opts *o) {
  free(o->cbpf.filter);
  o->cbpf.filter = NULL;
}

/* ------------------------------------------------------------------------ */
/* N-API glue: argument parsing and result objects.                          */
/* ------------------------------------------------------------------------ */

/* Any failed napi call: make sure an exception is pending, then bail out. */
#define NAPI_OK(env, call)                                                                                            \
  do {                                                                                                                \
    if ((call) != napi_ok) {                                                                                          \
      throw_last_error(env);                                                                                          \
      return 0;                                                                                                       \
    }                                                                                                                 \
  } while (0)

static void throw_last_error(napi_env env) {
  bool pending = false;
  const napi_extended_error_info *info = NULL;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  napi_get_last_error_info(env, &info);
  napi_throw_error(env, NULL, info && info->error_message ? info->error_message : "reuseport_native: napi call failed");
}

static int throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return 0;
}

static int throw_range(napi_env env, const char *message) {
  napi_throw_range_error(env, NULL, message);
  return 0;
}

/* Sets *present = 0 when the property is missing or undefined. Returns 0 on exception. */
static int get_prop(napi_env env, napi_value obj, const char *name, napi_value *out, int *present) {
  napi_valuetype t;
  NAPI_OK(env, napi_get_named_property(env, obj, name, out));
  NAPI_OK(env, napi_typeof(env, *out, &t));
  *present = t != napi_undefined;
  return 1;
}

static int expect_type(napi_env env, napi_value v, napi_valuetype want, const char *message) {
  napi_valuetype t;
  NAPI_OK(env, napi_typeof(env, v, &t));
  if (t != want) return throw_type(env, message);
  return 1;
}

static int read_bool(napi_env env, napi_value v, int *out, const char *message) {
  bool b;
  if (!expect_type(env, v, napi_boolean, message)) return 0;
  NAPI_OK(env, napi_get_value_bool(env, v, &b));
  *out = b ? 1 : 0;
  return 1;
}

/* An integer-valued number in [min, max]. */
static int read_int(napi_env env, napi_value v, double min, double max, int64_t *out, const char *message) {
  double d;
  if (!expect_type(env, v, napi_number, message)) return 0;
  NAPI_OK(env, napi_get_value_double(env, v, &d));
  if (!isfinite(d) || floor(d) != d || d < min || d > max) return throw_range(env, message);
  *out = (int64_t)d;
  return 1;
}

static int read_int_prop(napi_env env, napi_value obj, const char *name, double min, double max, int64_t *out,
                         const char *message) {
  napi_value v;
  int present;
  if (!get_prop(env, obj, name, &v, &present)) return 0;
  if (!present) return throw_type(env, message);
  return read_int(env, v, min, max, out, message);
}

static int parse_cbpf(napi_env env, napi_value arr, open_opts *o) {
  bool is_array;
  uint32_t len, i;
  NAPI_OK(env, napi_is_array(env, arr, &is_array));
  if (!is_array) return throw_type(env, "options.cbpf must be an array of { code, jt, jf, k }");
  NAPI_OK(env, napi_get_array_length(env, arr, &len));
  if (len > CBPF_MAX_LEN) return throw_range(env, "options.cbpf has more than 65535 instructions");
  o->cbpf.len = (unsigned short)len;
  o->cbpf.filter = calloc(len ? len : 1, sizeof(struct sock_filter));
  if (o->cbpf.filter == NULL) {
    napi_throw_error(env, NULL, "reuseport_native: out of memory");
    return 0;
  }
  o->has_cbpf = 1;
  for (i = 0; i < len; i++) {
    napi_value insn;
    int64_t code, jt, jf, k;
    const char *msg = "options.cbpf[i] must be { code: u16, jt: u8, jf: u8, k: u32 or i32 }";
    NAPI_OK(env, napi_get_element(env, arr, i, &insn));
    if (!expect_type(env, insn, napi_object, msg)) return 0;
    if (!read_int_prop(env, insn, "code", 0, 0xffff, &code, msg)) return 0;
    if (!read_int_prop(env, insn, "jt", 0, 0xff, &jt, msg)) return 0;
    if (!read_int_prop(env, insn, "jf", 0, 0xff, &jf, msg)) return 0;
    /* Negative k is allowed: SKF_AD_OFF + SKF_AD_CPU etc. are negative offsets. */
    if (!read_int_prop(env, insn, "k", -2147483648.0, 4294967295.0, &k, msg)) return 0;
    o->cbpf.filter[i].code = (uint16_t)code;
    o->cbpf.filter[i].jt = (uint8_t)jt;
    o->cbpf.filter[i].jf = (uint8_t)jf;
    o->cbpf.filter[i].k = (uint32_t)(k & 0xffffffff);
  }
  return 1;
}

static int parse_open_opts(napi_env env, napi_value obj, open_opts *o) {
  napi_value v;
  int present;
  int64_t n;
  size_t len = 0;

  memset(o, 0, sizeof(*o));
  o->backlog = DEFAULT_BACKLOG;
  if (!expect_type(env, obj, napi_object, "openSocket(options): options must be an object")) return 0;

  if (!read_int_prop(env, obj, "family", 4, 6, &n, "options.family must be 4 or 6")) return 0;
  if (n == 5) return throw_range(env, "options.family must be 4 or 6");
  o->family = n == 4 ? AF_INET : AF_INET6;

  {
    char type[8];
    const char *msg = "options.type must be 'tcp' or 'udp'";
    if (!get_prop(env, obj, "type", &v, &present)) return 0;
    if (!present || !expect_type(env, v, napi_string, msg)) return present ? 0 : throw_type(env, msg);
    NAPI_OK(env, napi_get_value_string_utf8(env, v, type, sizeof(type), &len));
    if (strcmp(type, "tcp") == 0)
      o->type = SOCK_STREAM;
    else if (strcmp(type, "udp") == 0)
      o->type = SOCK_DGRAM;
    else
      return throw_type(env, msg);
  }

  {
    const char *msg = "options.address must be a string (an IP literal)";
    if (!get_prop(env, obj, "address", &v, &present)) return 0;
    if (!present || !expect_type(env, v, napi_string, msg)) return present ? 0 : throw_type(env, msg);
    NAPI_OK(env, napi_get_value_string_utf8(env, v, NULL, 0, &len));
    if (len >= sizeof(o->address))
      o->address_too_long = 1;
    else
      NAPI_OK(env, napi_get_value_string_utf8(env, v, o->address, sizeof(o->address), &len));
    /* An embedded NUL would let "127.0.0.1\0junk" parse as 127.0.0.1. */
    if (strlen(o->address) != len) o->address_too_long = 1;
  }

  if (!read_int_prop(env, obj, "port", 0, 65535, &n, "options.port must be an integer in 0..65535")) return 0;
  o->port = (uint16_t)n;

  if (!get_prop(env, obj, "reusePort", &v, &present)) return 0;
  if (!present) return throw_type(env, "options.reusePort must be a boolean");
  if (!read_bool(env, v, &o->reuse_port, "options.reusePort must be a boolean")) return 0;

  if (!get_prop(env, obj, "reuseAddr", &v, &present)) return 0;
  if (!present) return throw_type(env, "options.reuseAddr must be a boolean");
  if (!read_bool(env, v, &o->reuse_addr, "options.reuseAddr must be a boolean")) return 0;

  if (!get_prop(env, obj, "ipv6Only", &v, &present)) return 0;
  if (present) {
    if (!read_bool(env, v, &o->v6only, "options.ipv6Only must be a boolean")) return 0;
    o->has_v6only = 1;
  }

  if (!get_prop(env, obj, "backlog", &v, &present)) return 0;
  if (present) {
    if (!read_int(env, v, 0, 2147483647.0, &n, "options.backlog must be an integer >= 0")) return 0;
    o->backlog = (int)n;
  }

  if (!get_prop(env, obj, "incomingCpu", &v, &present)) return 0;
  if (present) {
    if (!read_int(env, v, -1, 2147483647.0, &n, "options.incomingCpu must be an integer >= -1")) return 0;
    o->incoming_cpu = (int)n;
    o->has_incoming_cpu = 1;
  }

  if (!get_prop(env, obj, "cbpf", &v, &present)) return 0;
  if (present && !parse_cbpf(env, v, o)) return 0;

  return 1;
}

static napi_value make_object(napi_env env) {
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return obj;
}

static int set_number(napi_env env, napi_value obj, const char *name, double value) {
  napi_value v;
  NAPI_OK(env, napi_create_double(env, value, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, name, v));
  return 1;
}

static int set_string(napi_env env, napi_value obj, const char *name, const char *value) {
  napi_value v;
  NAPI_OK(env, napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, name, v));
  return 1;
}

static napi_value errno_object(napi_env env, int err, const char *syscall, const char *option) {
  napi_value obj = make_object(env);
  if (obj == NULL) return NULL;
  if (!set_number(env, obj, "errno", err)) return NULL;
  if (!set_string(env, obj, "syscall", syscall)) return NULL;
  if (option != NULL && !set_string(env, obj, "option", option)) return NULL;
  return obj;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  napi_value undef;
  NAPI_OK(env, napi_get_undefined(env, &undef));
  for (size_t i = 0; i < want; i++) argv[i] = undef;
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return 1;
}

/* openSocket(options) -> { fd } | { errno, syscall, option? } */
static napi_value js_open_socket(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  napi_value out;
  open_opts o;
  open_result r;

  if (!get_args(env, info, 1, argv)) return NULL;
  if (!parse_open_opts(env, argv[0], &o)) {
    free_open_opts(&o);
    return NULL;
  }
  r = open_bound_socket(&o);
  free_open_opts(&o);

  if (r.fd < 0) return errno_object(env, r.err, r.syscall, r.option);
  out = make_object(env);
  if (out == NULL || !set_number(env, out, "fd", r.fd)) {
    close(r.fd); /* could not hand it to JS: do not leak it */
    return NULL;
  }
  return out;
}

/* closeFd(fd) -> 0 | errno */
static napi_value js_close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  napi_value out;
  int64_t fd;
  int err = 0;

  if (!get_args(env, info, 1, argv)) return NULL;
  if (!read_int(env, argv[0], 0, 2147483647.0, &fd, "closeFd(fd): fd must be an integer >= 0")) return NULL;
  /* On Linux the fd is released even when close() reports EINTR: never retry. */
  if (close((int)fd) != 0) err = errno;
  if (napi_create_int32(env, err, &out) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return out;
}

static double rlim_to_number(rlim_t v) {
  return v == RLIM_INFINITY ? INFINITY : (double)v;
}

static napi_value limit_object(napi_env env, const struct rlimit *rl) {
  napi_value obj = make_object(env);
  if (obj == NULL) return NULL;
  if (!set_number(env, obj, "soft", rlim_to_number(rl->rlim_cur))) return NULL;
  if (!set_number(env, obj, "hard", rlim_to_number(rl->rlim_max))) return NULL;
  return obj;
}

/* getOpenFileLimit() -> { soft, hard } (Infinity for RLIM_INFINITY) */
static napi_value js_get_open_file_limit(napi_env env, napi_callback_info info) {
  struct rlimit rl;
  (void)info;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return errno_object(env, errno, "getrlimit", NULL);
  return limit_object(env, &rl);
}

/* raiseOpenFileLimit() -> { soft, hard } after soft = hard | { errno, syscall } */
static napi_value js_raise_open_file_limit(napi_env env, napi_callback_info info) {
  struct rlimit rl;
  (void)info;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return errno_object(env, errno, "getrlimit", NULL);
  if (rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return errno_object(env, errno, "setrlimit", NULL);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return errno_object(env, errno, "getrlimit", NULL);
  return limit_object(env, &rl);
}

/* ------------------------------------------------------------------------ */
/* getsockname                                                               */
/* ------------------------------------------------------------------------ */

typedef union {
  struct sockaddr sa;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
  struct sockaddr_storage ss;
} any_addr;

/* getsockname(fd) -> { address, port, family } | { errno, syscall } */
static napi_value js_getsockname(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  napi_value out;
  int64_t fd;
  any_addr addr;
  socklen_t len = sizeof(addr);
  char text[INET6_ADDRSTRLEN];
  int port, family;

  if (!get_args(env, info, 1, argv)) return NULL;
  if (!read_int(env, argv[0], 0, 2147483647.0, &fd, "getsockname(fd): fd must be an integer >= 0")) return NULL;
  memset(&addr, 0, sizeof(addr));
  if (getsockname((int)fd, &addr.sa, &len) != 0) return errno_object(env, errno, "getsockname", NULL);
  if (addr.sa.sa_family == AF_INET) {
    if (inet_ntop(AF_INET, &addr.v4.sin_addr, text, sizeof(text)) == NULL)
      return errno_object(env, errno, "inet_ntop", NULL);
    port = ntohs(addr.v4.sin_port);
    family = 4;
  } else if (addr.sa.sa_family == AF_INET6) {
    if (inet_ntop(AF_INET6, &addr.v6.sin6_addr, text, sizeof(text)) == NULL)
      return errno_object(env, errno, "inet_ntop", NULL);
    port = ntohs(addr.v6.sin6_port);
    family = 6;
  } else {
    return errno_object(env, EAFNOSUPPORT, "getsockname", NULL);
  }
  out = make_object(env);
  if (out == NULL) return NULL;
  if (!set_string(env, out, "address", text) || !set_number(env, out, "port", port) ||
      !set_number(env, out, "family", family))
    return NULL;
  return out;
}

/* Reads a Uint8Array (a Buffer is one) argument. */
static int read_bytes(napi_env env, napi_value v, const uint8_t **data, size_t *len, const char *message) {
  bool is_typed = false;
  napi_typedarray_type type;
  void *raw = NULL;
  NAPI_OK(env, napi_is_typedarray(env, v, &is_typed));
  if (!is_typed) return throw_type(env, message);
  NAPI_OK(env, napi_get_typedarray_info(env, v, &type, len, &raw, NULL, NULL));
  if (type != napi_uint8_array && type != napi_uint8_clamped_array) return throw_type(env, message);
  *data = raw;
  return 1;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Accept loop: one thread per listening fd, no JS per connection.           */
/* ------------------------------------------------------------------------ */

#define ACCEPT_LOOPS_MAX 64
/* Accepts per wakeup before looking at the stop eventfd again. */
#define ACCEPT_BATCH 256
/* Pause after EMFILE/ENFILE/ENOBUFS/ENOMEM or an unexpected error: never spin. */
#define ACCEPT_BACKOFF_MS 5
#define ACCEPT_STACK_SIZE (256 * 1024)
#define GREETING_MAX 65536
#define EV_LISTEN 0u
#define EV_STOP 1u

typedef struct {
  int listen_fd; /* not ours: the caller closes it after stop */
  int epoll_fd;
  int event_fd;
  pthread_t thread;
  atomic_uint_fast64_t accepted;
  atomic_uint_fast64_t errors;
  uint8_t *greeting;
  size_t greeting_len;
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

/* Accepts until EAGAIN (or a batch). Returns 1 if a stop was seen while backing off. */
static int accept_drain(accept_loop *l) {
  for (int i = 0; i < ACCEPT_BATCH; i++) {
    int fd = accept4(l->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        return 0;
      case EINTR:
        continue;
      /* The connection went away or the network failed for this one peer: next. */
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
        return accept_backoff(l);
      }
    }
    /* Counted once accepted, before the greeting: a client that has read it is always counted. */
    atomic_fetch_add(&l->accepted, 1);
    if (l->greeting_len > 0) {
      ssize_t w = send(fd, l->greeting, l->greeting_len, MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)w; /* best effort: a peer that left is not an error */
    }
    close(fd);
  }
  return 0;
}

static void *accept_thread(void *arg) {
  accept_loop *l = arg;
  struct epoll_event events[2];
  pthread_setname_np(pthread_self(), "rp-accept");
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
    if (listen_ready && accept_drain(l)) return NULL;
  }
}

static void accept_loop_free(accept_loop *l) {
  if (l == NULL) return;
  if (l->epoll_fd >= 0) close(l->epoll_fd);
  if (l->event_fd >= 0) close(l->event_fd);
  free(l->greeting);
  free(l);
}

/* Stops and frees the loop of a running slot. Call with accept_lock held. */
static void accept_slot_halt(accept_slot *slot) {
  accept_loop *l = slot->loop;
  uint64_t one = 1;
  ssize_t w;
  do {
    w = write(l->event_fd, &one, sizeof(one));
  } while (w < 0 && errno == EINTR);
  /* The eventfd counter cannot overflow from one write; the thread only ever waits on it. */
  pthread_join(l->thread, NULL);
  slot->final_accepted = atomic_load(&l->accepted);
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

/* acceptLoopStart(fd, greeting) -> handle | { errno, syscall, option? } */
static napi_value js_accept_loop_start(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  napi_value out;
  int64_t fd;
  const uint8_t *bytes = NULL;
  size_t len = 0;
  int listening = 0, flags, rc, slot_index = -1;
  socklen_t optlen = sizeof(listening);
  accept_loop *l;
  struct epoll_event ev;
  pthread_attr_t attr;
  sigset_t all, old;
  accept_slot *slot;
  uint64_t handle;

  if (!get_args(env, info, 2, argv)) return NULL;
  if (!read_int(env, argv[0], 0, 2147483647.0, &fd, "acceptLoopStart(fd, greeting): fd must be an integer >= 0"))
    return NULL;
  if (!read_bytes(env, argv[1], &bytes, &len, "acceptLoopStart(fd, greeting): greeting must be a Buffer"))
    return NULL;
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
  atomic_init(&l->accepted, 0);
  atomic_init(&l->errors, 0);
  l->greeting = malloc(len ? len : 1);
  if (l->greeting == NULL) return accept_fail(env, l, ENOMEM, "malloc", NULL);
  if (len) memcpy(l->greeting, bytes, len);
  l->greeting_len = len;

  /* Only a listening socket will do; anything else would never become readable as expected. */
  if (getsockopt(l->listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) != 0)
    return accept_fail(env, l, errno, "getsockopt", "SO_ACCEPTCONN");
  if (!listening) return accept_fail(env, l, EINVAL, "accept4", NULL);
  /* accept4() until EAGAIN needs a non-blocking listening fd. */
  flags = fcntl(l->listen_fd, F_GETFL);
  if (flags < 0) return accept_fail(env, l, errno, "fcntl", NULL);
  if (!(flags & O_NONBLOCK) && fcntl(l->listen_fd, F_SETFL, flags | O_NONBLOCK) != 0)
    return accept_fail(env, l, errno, "fcntl", NULL);

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
  rc = pthread_create(&l->thread, &attr, accept_thread, l);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    pthread_mutex_unlock(&accept_lock);
    return accept_fail(env, l, rc, "pthread_create", NULL);
  }
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
    value = atomic_load(errors ? &slot->loop->errors : &slot->loop->accepted);
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

static napi_value js_accept_loop_count(napi_env env, napi_callback_info info) {
  return accept_loop_read(env, info, 0);
}

static napi_value js_accept_loop_errors(napi_env env, napi_callback_info info) {
  return accept_loop_read(env, info, 1);
}

/* acceptLoopStop(handle) -> final count. Leaves the listening fd open. Again: the same count. */
static napi_value js_accept_loop_stop(napi_env env, napi_callback_info info) {
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

/* ------------------------------------------------------------------------ */
/* Load engine: epoll connection generator, run as async work.               */
/* ------------------------------------------------------------------------ */

/* Bytes kept of each reply: the first line of a greeting is well under this. */
#define LOAD_KEEP 128
#define LOAD_MAX_EVENTS 256
#define LOAD_MAX_WAIT_MS 50
#define LOAD_MAX_CONCURRENCY 1048576
/* Distinct first lines kept apart; more than that count as an empty reply. */
#define LOAD_MAX_DISTINCT 65536
/* Pseudo-errno: the connection was in flight when the run stopped early. */
#define LOAD_CUT_OFF (-1)

enum { LOAD_RAN_TO_END = 0, LOAD_DEADLINE = 1, LOAD_ABORTED = 2 };

typedef struct {
  int fd;        /* -1 when the slot is free */
  int len;       /* bytes kept in buf */
  int got;       /* any byte received */
  int prev;      /* in-flight list, ordered by deadline */
  int next;
  int64_t deadline;
  char buf[LOAD_KEEP];
} load_conn;

typedef struct {
  int used;
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

static void load_record_reply(load_job *j, const char *text, int len, int err) {
  uint64_t hash;
  load_reply *r;
  if (j->replies_used >= LOAD_MAX_DISTINCT) len = 0; /* pathological server: stop telling lines apart */
  hash = load_hash(text, len, err);
  if ((j->replies_used + 1) * 4 > j->replies_cap * 3) {
    size_t cap = j->replies_cap ? j->replies_cap * 2 : 16;
    load_reply *table = calloc(cap, sizeof(*table));
    if (table == NULL) {
      j->oom = 1;
      return;
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
    r->err = err;
    r->len = len;
    r->hash = hash;
    memcpy(r->text, text, (size_t)len);
    j->replies_used++;
  }
  r->count++;
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
    load_record_reply(s->job, c->buf, nl ? (int)(nl - c->buf) : c->len, err);
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
  int slot, err;
  int fd = socket(j->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    load_record_failure(j, errno);
    s->done++;
    return;
  }
  if (j->has_source) {
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 || bind(fd, &j->source.sa, j->addr_len) != 0) {
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
  slot = s->free_slots[--s->nfree];
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLRDHUP; /* errors (refused, reset) are always reported */
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
  c->deadline = s->now + j->reply_timeout_ns;
  load_append(s, slot);
  s->inflight++;
}

static void load_on_event(load_state *s, int slot) {
  load_conn *c = &s->conns[slot];
  int fresh = 0;
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
  free(j->replies);
  free(j->failures);
  free(j);
}

static void load_complete(napi_env env, napi_status status, void *data) {
  load_job *j = data;
  napi_value result = NULL;
  int reject = 0;
  if (status != napi_ok) {
    napi_throw_error(env, NULL, "loadRun: the run was cancelled");
  } else if (j->setup_err != 0) {
    result = errno_object(env, j->setup_err, j->setup_syscall, NULL);
  } else if (j->oom) {
    napi_throw_error(env, NULL, "reuseport_native: out of memory");
  } else {
    result = load_result(env, j);
  }
  if (result == NULL) {
    /* Whatever went wrong is the pending exception: hand it to the promise instead. */
    bool pending = false;
    reject = 1;
    napi_is_exception_pending(env, &pending);
    if (!pending || napi_get_and_clear_last_exception(env, &result) != napi_ok) {
      napi_value message;
      napi_create_string_utf8(env, "loadRun failed", NAPI_AUTO_LENGTH, &message);
      napi_create_error(env, NULL, message, &result);
    }
  }
  if (reject)
    napi_reject_deferred(env, j->deferred, result);
  else
    napi_resolve_deferred(env, j->deferred, result);
  napi_delete_reference(env, j->progress_ref);
  napi_delete_async_work(env, j->work);
  load_job_free(j);
}

static int read_address(napi_env env, napi_value obj, int family, any_addr *addr, socklen_t *len) {
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

static void set_port(any_addr *addr, int port) {
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
static napi_value js_load_run(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  napi_value promise, name;
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
  if (napi_create_string_utf8(env, "reuseport:loadRun", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, load_execute, load_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    /* The promise exists: settle it rather than leave it pending forever. */
    napi_value err = NULL, message;
    throw_last_error(env);
    if (napi_get_and_clear_last_exception(env, &err) != napi_ok || err == NULL) {
      napi_create_string_utf8(env, "loadRun: cannot queue the work", NAPI_AUTO_LENGTH, &message);
      napi_create_error(env, NULL, message, &err);
    }
    napi_reject_deferred(env, j->deferred, err);
    if (j->work != NULL) napi_delete_async_work(env, j->work);
    napi_delete_reference(env, j->progress_ref);
    load_job_free(j);
    return promise;
  }
  return promise;

napi_fail:
  throw_last_error(env);
fail:
  if (j->progress_ref != NULL) napi_delete_reference(env, j->progress_ref);
  load_job_free(j);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"openSocket", NULL, js_open_socket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, js_close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"raiseOpenFileLimit", NULL, js_raise_open_file_limit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getOpenFileLimit", NULL, js_get_open_file_limit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getsockname", NULL, js_getsockname, NULL, NULL, NULL, napi_enumerable, NULL},
      {"acceptLoopStart", NULL, js_accept_loop_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"acceptLoopCount", NULL, js_accept_loop_count, NULL, NULL, NULL, napi_enumerable, NULL},
      {"acceptLoopErrors", NULL, js_accept_loop_errors, NULL, NULL, NULL, napi_enumerable, NULL},
      {"acceptLoopStop", NULL, js_accept_loop_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"loadRun", NULL, js_load_run, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return exports;
}
