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
 *
 * Layout (shared declarations in addon.h):
 *   napi_util.c        N-API helpers: throwing, argument reading, result objects
 *   sockets.c          open options, sockopt plan, open_bound_socket; openSocket,
 *                      closeFd, getsockname, getOpenFileLimit, raiseOpenFileLimit
 *   accept_loop.c      the accept loop thread; acceptLoopStart/Count/Errors/Stop
 *   load_engine.c      the load engine (napi async work); loadRun
 *   netns.c            lo set-up in a private namespace without `ip`; linkUp, addAddress
 *   reuseport_native.c this file: the module init registering every JS function
 */
#include "addon.h"

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
      {"linkUp", NULL, js_link_up, NULL, NULL, NULL, napi_enumerable, NULL},
      {"addAddress", NULL, js_add_address, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return exports;
}
