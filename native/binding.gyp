{
  "targets": [
    {
      "target_name": "reuseport_native",
      "sources": ["reuseport_native.c", "napi_util.c", "sockets.c", "accept_loop.c", "load_engine.c", "socket_lifecycle.c", "port_sweep.c", "netns.c", "compare_burn.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-pthread"],
      "cflags_c": ["-std=gnu11"],
      "ldflags": ["-pthread"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"]
        }
      }
    },
    {
      "target_name": "reuseport-compare",
      "type": "executable",
      "sources": ["compare_main.c", "compare_server.c", "compare_client.c", "compare_node.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
