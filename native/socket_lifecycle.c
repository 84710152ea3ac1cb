/*
 * Socket lifecycle: one syscall per JS call, so that a scenario can put any
 * step in any order (bind without listen, SO_REUSEPORT after bind, shutdown
 * then listen again, close with a full accept queue, ...). JS functions
 * lcSocket, lcSetOption, lcGetOption, lcBindToDevice, lcBind, lcListen,
 * lcShutdown, lcConnect, lcFchown, lcAttachCbpf, lcDetachBpf, lcAccept and
 * lcAcceptQueue. closeFd (sockets.c) closes.
 *
 * Every kernel failure is a value, { errno, syscall, option? }; success is 0
 * or an object. Only wrong argument types throw.
 */
#include "addon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes an accept reads from a fresh connection: the "few bytes" a holding client sends. */
#define LC_ACCEPT_READ_MAX 4096
#define LC_GREETING_MAX 65536

typedef struct {
  const char *name;
  int level;
  int optname;
} lc_option;

/*
 * The options a step may set or read at any time; the JS names are the
 * kernel's. native.ts's socketFlags use the same two calls on sockets Node owns.
 */
static const lc_option lc_options[] = {
    {"SO_REUSEPORT", SOL_SOCKET, SO_REUSEPORT},
    {"SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR},
    {"SO_INCOMING_CPU", SOL_SOCKET, SO_INCOMING_CPU},
    {"IPV6_V6ONLY", IPPROTO_IPV6, IPV6_V6ONLY},
};

static napi_value lc_ok(napi_env env) {
  napi_value out;
  if (napi_create_int32(env, 0, &out) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return out;
}

/* 0 on success, else the errno object of `syscall`. */
static napi_value lc_result(napi_env env, int rc, const char *syscall, const char *option) {
  if (rc == 0) return lc_ok(env);
  return errno_object(env, errno, syscall, option);
}

static int lc_read_fd(napi_env env, napi_value v, int *fd) {
  int64_t n;
  if (!read_int(env, v, 0, 2147483647.0, &n, "fd must be an integer >= 0")) return 0;
  *fd = (int)n;
  return 1;
}

static int lc_read_family(napi_env env, napi_value v, int *family) {
  int64_t n;
  if (!read_int(env, v, 4, 6, &n, "family must be 4 or 6")) return 0;
  if (n == 5) return throw_range(env, "family must be 4 or 6");
  *family = n == 4 ? AF_INET : AF_INET6;
  return 1;
}

static int lc_read_string(napi_env env, napi_value v, char *buf, size_t size, const char *message) {
  size_t len = 0;
  if (!expect_type(env, v, napi_string, message)) return 0;
  NAPI_OK(env, napi_get_value_string_utf8(env, v, NULL, 0, &len));
  if (len >= size) return throw_range(env, message);
  NAPI_OK(env, napi_get_value_string_utf8(env, v, buf, size, &len));
  if (strlen(buf) != len) return throw_range(env, message); /* an embedded NUL */
  return 1;
}

static const lc_option *lc_read_option(napi_env env, napi_value v) {
  char name[32];
  const char *message = "option must be SO_REUSEPORT, SO_REUSEADDR, SO_INCOMING_CPU or IPV6_V6ONLY";
  if (!lc_read_string(env, v, name, sizeof(name), message)) return NULL;
  for (size_t i = 0; i < sizeof(lc_options) / sizeof(lc_options[0]); i++)
    if (strcmp(lc_options[i].name, name) == 0) return &lc_options[i];
  throw_type(env, message);
  return NULL;
}

/* Reads { host, port } into addr, for the fd's own family. */
static int lc_read_endpoint(napi_env env, napi_value obj, int fd, any_addr *addr, socklen_t *len, int *bad_family) {
  int64_t port;
  int family;
  socklen_t flen = sizeof(family);
  *bad_family = 0;
  if (!expect_type(env, obj, napi_object, "endpoint must be { host, port }")) return 0;
  if (!read_int_prop(env, obj, "port", 0, 65535, &port, "endpoint.port must be an integer in 0..65535")) return 0;
  /* The family the socket was created with decides how to read host; an fd that is not a socket says so. */
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &flen) != 0) {
    *bad_family = errno;
    return 1;
  }
  if (family != AF_INET && family != AF_INET6) {
    *bad_family = EAFNOSUPPORT;
    return 1;
  }
  if (!read_address(env, obj, family, addr, len)) return 0;
  set_port(addr, (int)port);
  return 1;
}

static int lc_set_address_text(napi_env env, napi_value obj, const any_addr *addr) {
  char text[INET6_ADDRSTRLEN] = "";
  int port = 0;
  if (addr->sa.sa_family == AF_INET) {
    inet_ntop(AF_INET, &addr->v4.sin_addr, text, sizeof(text));
    port = ntohs(addr->v4.sin_port);
  } else if (addr->sa.sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &addr->v6.sin6_addr, text, sizeof(text));
    port = ntohs(addr->v6.sin6_port);
  }
  return set_string(env, obj, "address", text) && set_number(env, obj, "port", port);
}

/* lcSocket(family, 'tcp' | 'udp') -> { fd } | errno object. Non-blocking, so accept never blocks Node. */
napi_value js_lc_socket(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  int family = AF_INET, type, fd;
  char name[8];
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!lc_read_family(env, argv[0], &family)) return NULL;
  if (!lc_read_string(env, argv[1], name, sizeof(name), "type must be 'tcp' or 'udp'")) return NULL;
  if (strcmp(name, "tcp") == 0)
    type = SOCK_STREAM;
  else if (strcmp(name, "udp") == 0)
    type = SOCK_DGRAM;
  else {
    throw_type(env, "type must be 'tcp' or 'udp'");
    return NULL;
  }
  fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_object(env, errno, "socket", NULL);
  out = make_object(env);
  if (out == NULL || !set_number(env, out, "fd", fd)) {
    close(fd);
    return NULL;
  }
  return out;
}

/* lcSetOption(fd, name, value: integer) -> 0 | errno object */
napi_value js_lc_set_option(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd, value;
  int64_t n;
  const lc_option *o;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  if ((o = lc_read_option(env, argv[1])) == NULL) return NULL;
  if (!read_int(env, argv[2], -2147483648.0, 2147483647.0, &n, "value must be a 32-bit integer")) return NULL;
  value = (int)n;
  return lc_result(env, setsockopt(fd, o->level, o->optname, &value, sizeof(value)), "setsockopt", o->name);
}

/* lcGetOption(fd, name) -> { value } | errno object */
napi_value js_lc_get_option(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  int fd, value = 0;
  socklen_t len = sizeof(value);
  const lc_option *o;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  if ((o = lc_read_option(env, argv[1])) == NULL) return NULL;
  if (getsockopt(fd, o->level, o->optname, &value, &len) != 0) return errno_object(env, errno, "getsockopt", o->name);
  out = make_object(env);
  if (out == NULL || !set_number(env, out, "value", value)) return NULL;
  return out;
}

/* lcBindToDevice(fd, name) -> 0 | errno object; '' unbinds. */
napi_value js_lc_bind_to_device(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  char device[IFNAMSIZ];
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  if (!lc_read_string(env, argv[1], device, sizeof(device), "device must be an interface name shorter than 16 bytes"))
    return NULL;
  return lc_result(env, setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, (socklen_t)strlen(device)), "setsockopt",
                   "SO_BINDTODEVICE");
}

/* lcBind(fd, { host, port }) -> { address, port } (what the kernel chose for port 0) | errno object */
napi_value js_lc_bind(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  int fd, bad_family;
  any_addr addr, bound;
  socklen_t len = 0, blen = sizeof(bound);
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  if (!lc_read_endpoint(env, argv[1], fd, &addr, &len, &bad_family)) return NULL;
  if (bad_family) return errno_object(env, bad_family, "bind", NULL);
  if (bind(fd, &addr.sa, len) != 0) return errno_object(env, errno, "bind", NULL);
  memset(&bound, 0, sizeof(bound));
  if (getsockname(fd, &bound.sa, &blen) != 0) return errno_object(env, errno, "getsockname", NULL);
  out = make_object(env);
  if (out == NULL || !lc_set_address_text(env, out, &bound)) return NULL;
  return out;
}

/* lcListen(fd, backlog) -> 0 | errno object */
napi_value js_lc_listen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  int64_t backlog;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  if (!read_int(env, argv[1], 0, 2147483647.0, &backlog, "backlog must be an integer >= 0")) return NULL;
  return lc_result(env, listen(fd, (int)backlog), "listen", NULL);
}

/* lcShutdown(fd) -> 0 | errno object: SHUT_RDWR. On a listener it leaves the group; listen() again rejoins. */
napi_value js_lc_shutdown(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  return lc_result(env, shutdown(fd, SHUT_RDWR), "shutdown", NULL);
}

/* lcConnect(fd, { host, port }) -> 0 | errno object. Meant for UDP (a connected group member). */
napi_value js_lc_connect(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd, bad_family, rc;
  any_addr addr;
  socklen_t len = 0;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  if (!lc_read_endpoint(env, argv[1], fd, &addr, &len, &bad_family)) return NULL;
  if (bad_family) return errno_object(env, bad_family, "connect", NULL);
  do {
    rc = connect(fd, &addr.sa, len);
  } while (rc != 0 && errno == EINTR);
  return lc_result(env, rc, "connect", NULL);
}

/* lcFchown(fd, uid, gid) -> 0 | errno object: the socket inode's owner (and so sk_uid, see sockfs_setattr). */
napi_value js_lc_fchown(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  int64_t uid, gid;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  if (!read_int(env, argv[1], 0, 4294967294.0, &uid, "uid must be an integer in 0..4294967294")) return NULL;
  if (!read_int(env, argv[2], 0, 4294967294.0, &gid, "gid must be an integer in 0..4294967294")) return NULL;
  return lc_result(env, fchown(fd, (uid_t)uid, (gid_t)gid), "fchown", NULL);
}

/* lcAttachCbpf(fd, instructions) -> 0 | errno object */
napi_value js_lc_attach_cbpf(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  int fd, rc;
  struct sock_fprog prog = {0, NULL};
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  if (!read_cbpf(env, argv[1], &prog,
                 "instructions must be an array of at most 65535 { code: u16, jt: u8, jf: u8, k: u32 or i32 }")) {
    free(prog.filter);
    return NULL;
  }
  rc = setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog));
  out = lc_result(env, rc, "setsockopt", "SO_ATTACH_REUSEPORT_CBPF");
  free(prog.filter);
  return out;
}

/* lcDetachBpf(fd) -> 0 | errno object */
napi_value js_lc_detach_bpf(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd, unused = 0;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  return lc_result(env, setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused, sizeof(unused)), "setsockopt",
                   "SO_DETACH_REUSEPORT_BPF");
}

/*
 * Reads what the peer already sent, waiting up to wait_ms for at least
 * min_bytes. Returns the count; *read_err is the errno that ended reading
 * (0 for none, including EOF, which *eof marks).
 */
static size_t lc_read_some(int fd, uint8_t *buf, size_t cap, size_t min_bytes, int64_t wait_ms, int *read_err,
                           int *eof) {
  size_t got = 0;
  int64_t deadline = mono_ns() + wait_ms * 1000000LL;
  *read_err = 0;
  *eof = 0;
  while (got < cap) {
    ssize_t r = recv(fd, buf + got, cap - got, MSG_DONTWAIT);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r == 0) {
      *eof = 1;
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      *read_err = errno;
      break;
    }
    if (got >= min_bytes) break;
    {
      int64_t left = (deadline - mono_ns()) / 1000000LL;
      struct pollfd p = {fd, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, (int)left) <= 0) break;
    }
  }
  return got;
}

/*
 * lcAccept(fd, { greeting?, minBytes?, waitMs?, keep? }) ->
 *   { fd, address, port, received: Buffer, readErrno, eof, incomingCpu } | errno object (EAGAIN: queue empty)
 * Accepts one connection, reads what it already sent (waiting at most waitMs
 * for minBytes), sends greeting, and closes it unless keep (then fd is its fd, else -1).
 */
napi_value js_lc_accept(napi_env env, napi_callback_info info) {
  napi_value argv[2], v, out, received;
  int fd, child, present, keep = 0, read_err = 0, eof = 0, cpu = -1;
  int64_t min_bytes = 0, wait_ms = 0;
  const uint8_t *greeting = NULL;
  size_t greeting_len = 0, got;
  any_addr peer;
  socklen_t plen = sizeof(peer), clen = sizeof(cpu);
  uint8_t buf[LC_ACCEPT_READ_MAX];
  void *copy = NULL;

  if (!get_args(env, info, 2, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  if (!expect_type(env, argv[1], napi_object, "options must be an object")) return NULL;
  if (!get_prop(env, argv[1], "greeting", &v, &present)) return NULL;
  if (present && !read_bytes(env, v, &greeting, &greeting_len, "options.greeting must be a Buffer")) return NULL;
  if (greeting_len > LC_GREETING_MAX) {
    throw_range(env, "options.greeting is longer than 65536 bytes");
    return NULL;
  }
  if (!get_prop(env, argv[1], "minBytes", &v, &present)) return NULL;
  if (present && !read_int(env, v, 0, LC_ACCEPT_READ_MAX, &min_bytes, "options.minBytes must be in 0..4096"))
    return NULL;
  if (!get_prop(env, argv[1], "waitMs", &v, &present)) return NULL;
  if (present && !read_int(env, v, 0, 10000, &wait_ms, "options.waitMs must be in 0..10000")) return NULL;
  if (!get_prop(env, argv[1], "keep", &v, &present)) return NULL;
  if (present && !read_bool(env, v, &keep, "options.keep must be a boolean")) return NULL;

  memset(&peer, 0, sizeof(peer));
  do {
    child = accept4(fd, &peer.sa, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (child < 0 && errno == EINTR);
  if (child < 0) return errno_object(env, errno, "accept4", NULL);

  got = lc_read_some(child, buf, sizeof(buf), (size_t)min_bytes, wait_ms, &read_err, &eof);
  /* The accepted socket's own SO_INCOMING_CPU: the CPU that last processed its packets. */
  if (getsockopt(child, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &clen) != 0) cpu = -1;
  if (greeting_len > 0) {
    ssize_t w = send(child, greeting, greeting_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && read_err == 0) read_err = errno;
  }
  if (!keep) close(child);

  out = make_object(env);
  if (out == NULL) goto fail;
  if (!set_number(env, out, "fd", keep ? child : -1) || !lc_set_address_text(env, out, &peer)) goto fail;
  if (napi_create_buffer_copy(env, got, buf, &copy, &received) != napi_ok ||
      napi_set_named_property(env, out, "received", received) != napi_ok) {
    throw_last_error(env);
    goto fail;
  }
  if (!set_number(env, out, "readErrno", read_err) || !set_number(env, out, "incomingCpu", cpu)) goto fail;
  if (napi_get_boolean(env, eof, &v) != napi_ok || napi_set_named_property(env, out, "eof", v) != napi_ok) {
    throw_last_error(env);
    goto fail;
  }
  return out;
fail:
  if (keep) close(child); /* could not hand it to JS: do not leak it */
  return NULL;
}

/*
 * lcAcceptQueue(fd) -> { queued, backlog } | errno object. For a listener,
 * tcp_get_info() reports sk_ack_backlog in tcpi_unacked and
 * sk_max_ack_backlog in tcpi_sacked.
 */
napi_value js_lc_accept_queue(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int fd;
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!lc_read_fd(env, argv[0], &fd)) return NULL;
  memset(&ti, 0, sizeof(ti));
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return errno_object(env, errno, "getsockopt", "TCP_INFO");
  if (ti.tcpi_state != TCP_LISTEN) return errno_object(env, EINVAL, "getsockopt", "TCP_INFO");
  out = make_object(env);
  if (out == NULL || !set_number(env, out, "queued", ti.tcpi_unacked) || !set_number(env, out, "backlog", ti.tcpi_sacked))
    return NULL;
  return out;
}
