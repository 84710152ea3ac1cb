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
 *   socket_lifecycle.c one syscall per call for scenario lifecycle steps: lcSocket,
 *                      lcSetOption, lcGetOption, lcBindToDevice, lcBind, lcListen,
 *                      lcShutdown, lcConnect, lcFchown, lcAttachCbpf, lcDetachBpf,
 *                      lcAccept, lcAcceptQueue
 *   port_sweep.c       source-port sweep client (napi async work); portSweep
 *   netns.c            lo set-up in a private namespace without `ip`; linkUp, addAddress, routeType
 *   compare_burn.c     the heavy handler's CPU work (burn.h) for `compare`'s Node workers; cpuBurn
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
      {"lcSocket", NULL, js_lc_socket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcSetOption", NULL, js_lc_set_option, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcGetOption", NULL, js_lc_get_option, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcBindToDevice", NULL, js_lc_bind_to_device, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcBind", NULL, js_lc_bind, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcListen", NULL, js_lc_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcShutdown", NULL, js_lc_shutdown, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcConnect", NULL, js_lc_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcFchown", NULL, js_lc_fchown, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcAttachCbpf", NULL, js_lc_attach_cbpf, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcDetachBpf", NULL, js_lc_detach_bpf, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcAccept", NULL, js_lc_accept, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lcAcceptQueue", NULL, js_lc_accept_queue, NULL, NULL, NULL, napi_enumerable, NULL},
      {"portSweep", NULL, js_port_sweep, NULL, NULL, NULL, napi_enumerable, NULL},
      {"linkUp", NULL, js_link_up, NULL, NULL, NULL, napi_enumerable, NULL},
      {"addAddress", NULL, js_add_address, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cpuBurn", NULL, js_cpu_burn, NULL, NULL, NULL, napi_enumerable, NULL},
      {"routeType", NULL, js_route_type, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return exports;
}
