/*
 * reuseport_native: declarations shared by the parts of the addon (the layout
 * is described at the top of reuseport_native.c).
 */
#ifndef REUSEPORT_ADDON_H
#define REUSEPORT_ADDON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <netinet/in.h>
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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

/* netns.c */
napi_value js_link_up(napi_env env, napi_callback_info info);
napi_value js_add_address(napi_env env, napi_callback_info info);

#pragma GCC visibility pop

#endif /* REUSEPORT_ADDON_H */
