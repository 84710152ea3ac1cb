/*
 * Opening sockets: the open options, the sockopt plan, open_bound_socket and
 * the JS functions openSocket, closeFd, getsockname, getOpenFileLimit and
 * raiseOpenFileLimit.
 */
#include "addon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_BACKLOG 511
#define MAX_SOCKOPT_STEPS 8

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
/* Option parsing and the JS functions.                                      */
/* ------------------------------------------------------------------------ */

/* Reads an array of { code, jt, jf, k } into prog->filter (malloc'd: the caller frees it, also on failure). */
int read_cbpf(napi_env env, napi_value arr, struct sock_fprog *prog, const char *message) {
  bool is_array;
  uint32_t len, i;
  prog->len = 0;
  prog->filter = NULL;
  NAPI_OK(env, napi_is_array(env, arr, &is_array));
  if (!is_array) return throw_type(env, message);
  NAPI_OK(env, napi_get_array_length(env, arr, &len));
  if (len > CBPF_MAX_LEN) return throw_range(env, message);
  prog->len = (unsigned short)len;
  prog->filter = calloc(len ? len : 1, sizeof(struct sock_filter));
  if (prog->filter == NULL) {
    napi_throw_error(env, NULL, "reuseport_native: out of memory");
    return 0;
  }
  for (i = 0; i < len; i++) {
    napi_value insn;
    int64_t code, jt, jf, k;
    NAPI_OK(env, napi_get_element(env, arr, i, &insn));
    if (!expect_type(env, insn, napi_object, message)) return 0;
    if (!read_int_prop(env, insn, "code", 0, 0xffff, &code, message)) return 0;
    if (!read_int_prop(env, insn, "jt", 0, 0xff, &jt, message)) return 0;
    if (!read_int_prop(env, insn, "jf", 0, 0xff, &jf, message)) return 0;
    /* Negative k is allowed: SKF_AD_OFF + SKF_AD_CPU etc. are negative offsets. */
    if (!read_int_prop(env, insn, "k", -2147483648.0, 4294967295.0, &k, message)) return 0;
    prog->filter[i].code = (uint16_t)code;
    prog->filter[i].jt = (uint8_t)jt;
    prog->filter[i].jf = (uint8_t)jf;
    prog->filter[i].k = (uint32_t)(k & 0xffffffff);
  }
  return 1;
}

static int parse_cbpf(napi_env env, napi_value arr, open_opts *o) {
  o->has_cbpf = 1;
  return read_cbpf(env, arr, &o->cbpf,
                   "options.cbpf must be an array of at most 65535 { code: u16, jt: u8, jf: u8, k: u32 or i32 }");
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

/* openSocket(options) -> { fd } | { errno, syscall, option? } */
napi_value js_open_socket(napi_env env, napi_callback_info info) {
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
napi_value js_close_fd(napi_env env, napi_callback_info info) {
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
napi_value js_get_open_file_limit(napi_env env, napi_callback_info info) {
  struct rlimit rl;
  (void)info;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return errno_object(env, errno, "getrlimit", NULL);
  return limit_object(env, &rl);
}

/* raiseOpenFileLimit() -> { soft, hard } after soft = hard | { errno, syscall } */
napi_value js_raise_open_file_limit(napi_env env, napi_callback_info info) {
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

/* getsockname(fd) -> { address, port, family } | { errno, syscall } */
napi_value js_getsockname(napi_env env, napi_callback_info info) {
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
