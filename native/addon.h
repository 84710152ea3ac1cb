/*
 * reuseport_native: declarations shared by the parts of the addon (the layout
 * is described at the top of reuseport_native.c).
 */
#ifndef REUSEPORT_ADDON_H
#define REUSEPORT_ADDON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <linux/filter.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifndef SO_INCOMING_CPU
#define SO_INCOMING_CPU 49
#endif
#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif
/* struct sock_fprog.len is an unsigned short. */
#define CBPF_MAX_LEN 65535

/* Room for the longest IPv6 literal; longer strings are an inet_pton failure. */
#define ADDRESS_MAX 64

typedef union {
  struct sockaddr sa;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
  struct sockaddr_storage ss;
} any_addr;

/* Any failed napi call: make sure an exception is pending, then bail out. */
#define NAPI_OK(env, call)                                                                                            \
  do {                                                                                                                \
    if ((call) != napi_ok) {                                                                                          \
      throw_last_error(env);                                                                                          \
      return 0;                                                                                                       \
    }                                                                                                                 \
  } while (0)

/*
 * Everything below is internal to the addon: hidden, so the .node file still
 * exports only the module init (node-gyp does not pass -fvisibility=hidden).
 */
#pragma GCC visibility push(hidden)

/* ---- napi_util.c: N-API helpers. Those returning int give 0 with an exception pending. ---- */

void throw_last_error(napi_env env);
int throw_type(napi_env env, const char *message);
int throw_range(napi_env env, const char *message);
/* Sets *present = 0 when the property is missing or undefined. Returns 0 on exception. */
int get_prop(napi_env env, napi_value obj, const char *name, napi_value *out, int *present);
int expect_type(napi_env env, napi_value v, napi_valuetype want, const char *message);
int read_bool(napi_env env, napi_value v, int *out, const char *message);
/* An integer-valued number in [min, max]. */
int read_int(napi_env env, napi_value v, double min, double max, int64_t *out, const char *message);
int read_int_prop(napi_env env, napi_value obj, const char *name, double min, double max, int64_t *out,
                  const char *message);
/* Reads a Uint8Array (a Buffer is one) argument. */
int read_bytes(napi_env env, napi_value v, const uint8_t **data, size_t *len, const char *message);
/* Fills argv[0..want) with the arguments, undefined for the missing ones. */
int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
/* NULL with an exception pending on failure. */
napi_value make_object(napi_env env);
int set_number(napi_env env, napi_value obj, const char *name, double value);
int set_string(napi_env env, napi_value obj, const char *name, const char *value);
/* { errno, syscall, option? }; option may be NULL. */
napi_value errno_object(napi_env env, int err, const char *syscall, const char *option);
/*
 * The end of an async work's complete callback: resolves the promise with
 * result, or, when result is NULL, rejects it with the pending exception (an
 * Error saying `failure` if there is none); then deletes the work, if any.
 */
void settle_async_work(napi_env env, napi_deferred deferred, napi_async_work work, napi_value result,
                       const char *failure);
/*
 * Creates and queues the async work of an existing promise into *work (NULL
 * beforehand). 0 when it could not: the promise is then rejected (an Error
 * saying `failure` at worst), and the complete callback will never run.
 */
int queue_async_work(napi_env env, const char *resource, napi_async_execute_callback execute,
                     napi_async_complete_callback complete, void *data, napi_deferred deferred, napi_async_work *work,
                     const char *failure);

/* ---- Helpers of one part that another part reuses. ---- */

/* sockets.c: an array of { code, jt, jf, k } into prog (prog->filter is malloc'd: free it, also on failure). */
int read_cbpf(napi_env env, napi_value arr, struct sock_fprog *prog, const char *message);
/* load_engine.c: the IP literal in obj.host, of family AF_INET or AF_INET6, port 0. */
int read_address(napi_env env, napi_value obj, int family, any_addr *addr, socklen_t *len);
void set_port(any_addr *addr, int port);
int64_t mono_ns(void);

/* ---- The JS functions each part exposes; reuseport_native.c registers them. ---- */

/* sockets.c */
napi_value js_open_socket(napi_env env, napi_callback_info info);
napi_value js_close_fd(napi_env env, napi_callback_info info);
napi_value js_get_open_file_limit(napi_env env, napi_callback_info info);
napi_value js_raise_open_file_limit(napi_env env, napi_callback_info info);
napi_value js_getsockname(napi_env env, napi_callback_info info);

/* accept_loop.c */
napi_value js_accept_loop_start(napi_env env, napi_callback_info info);
napi_value js_accept_loop_count(napi_env env, napi_callback_info info);
napi_value js_accept_loop_errors(napi_env env, napi_callback_info info);
napi_value js_accept_loop_stop(napi_env env, napi_callback_info info);

/* load_engine.c */
napi_value js_load_run(napi_env env, napi_callback_info info);

/* socket_lifecycle.c */
napi_value js_lc_socket(napi_env env, napi_callback_info info);
napi_value js_lc_set_option(napi_env env, napi_callback_info info);
napi_value js_lc_get_option(napi_env env, napi_callback_info info);
napi_value js_lc_bind_to_device(napi_env env, napi_callback_info info);
napi_value js_lc_bind(napi_env env, napi_callback_info info);
napi_value js_lc_listen(napi_env env, napi_callback_info info);
napi_value js_lc_shutdown(napi_env env, napi_callback_info info);
napi_value js_lc_connect(napi_env env, napi_callback_info info);
napi_value js_lc_fchown(napi_env env, napi_callback_info info);
napi_value js_lc_attach_cbpf(napi_env env, napi_callback_info info);
napi_value js_lc_detach_bpf(napi_env env, napi_callback_info info);
napi_value js_lc_accept(napi_env env, napi_callback_info info);
napi_value js_lc_accept_queue(napi_env env, napi_callback_info info);

/* port_sweep.c */
napi_value js_port_sweep(napi_env env, napi_callback_info info);

/* netns.c */
napi_value js_link_up(napi_env env, napi_callback_info info);
napi_value js_add_address(napi_env env, napi_callback_info info);
napi_value js_route_type(napi_env env, napi_callback_info info);

/* compare_burn.c */
napi_value js_cpu_burn(napi_env env, napi_callback_info info);

#pragma GCC visibility pop

#endif /* REUSEPORT_ADDON_H */
