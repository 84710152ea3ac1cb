/*
 * reuseport-compare: a small stand-alone executable (not part of the addon)
 * that runs one accept model at a time as real forked worker processes, loads
 * it from its own client, and prints raw measurements as JSON lines on
 * stdout. `reuseport compare` (src/compare/) starts it inside a fresh network
 * namespace and turns the figures into tables and verdicts.
 *
 * Why an executable and not the N-API addon: workers must be real processes
 * that contain nothing but the accept model and the handler. fork() from a
 * multi-threaded Node process is unsafe, and a Node worker per process would
 * measure V8 and libuv, not the kernel's accept paths.
 *
 *   compare.h         shared declarations
 *   compare_main.c    arguments, phases, rounds, JSON output, cleanup
 *   compare_server.c  the six C models, the one handler, workers and dispatchers
 *   compare_node.c    the Node cluster models (--with-node): a Node primary started by exec
 *   compare_client.c  the epoll load client (closed loop or fixed rate)
 */
#ifndef REUSEPORT_COMPARE_H
#define REUSEPORT_COMPARE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define COMPARE_MAX_WORKERS 64
/* listen() backlog: a stopped reuseport worker must be able to queue its whole share. */
#define COMPARE_BACKLOG 4096

typedef enum {
  MODEL_REUSEPORT,
  MODEL_SHARED_FIFO,
  MODEL_SHARED_LIFO,
  MODEL_SHARED_EPOLL,
  MODEL_DISPATCHER,
  MODEL_DISPATCHER_LEAST_LOADED,
  /* Node's cluster module, run by the Node that runs `reuseport` (--node): same reply, JS handler. */
  MODEL_NODE_CLUSTER_RR,
  MODEL_NODE_SCHED_NONE,
  MODEL_NODE_REUSEPORT,
  MODEL_COUNT
} model_kind;

#define C_MODEL_COUNT MODEL_NODE_CLUSTER_RR
static inline int is_node_model(model_kind m) { return m >= MODEL_NODE_CLUSTER_RR; }

extern const char *const model_names[MODEL_COUNT];

/* HANDLER_SLOW: light, but worker 0 sleeps SLOW_SLEEP_MS on every SLOW_EVERY-th request. */
typedef enum { HANDLER_LIGHT, HANDLER_HEAVY, HANDLER_SLOW } handler_kind;
#define SLOW_EVERY 10
#define SLOW_SLEEP_MS 200

/* One per worker (and one for the dispatcher), in memory shared across fork(). */
typedef struct {
  atomic_uint_fast64_t accepted;
  /* epoll models: woken, but accept4() found nothing (the thundering herd). */
  atomic_uint_fast64_t empty_wakeups;
  /* dispatcher models: descriptors that arrived as SCM_RIGHTS (workers) or were sent (dispatcher). */
  atomic_uint_fast64_t fds_passed;
  atomic_uint_fast64_t errors;
  atomic_int ready;
  char pad[64 - 4 * sizeof(atomic_uint_fast64_t) - sizeof(atomic_int)];
} worker_counters;

typedef struct {
  model_kind model;
  int workers;
  handler_kind handler;
  uint64_t burn_iterations; /* heavy handler: loop iterations of about burn_us of CPU */
  int port;
  pid_t worker_pids[COMPARE_MAX_WORKERS];
  pid_t dispatcher_pid; /* 0 when the model has none; a Node model's cluster primary */
  worker_counters *counters; /* workers 0..n-1, then the dispatcher */
  int listeners; /* LISTEN sockets on the port, counted in /proc/net/tcp after start */
  int node_in, node_out; /* a Node model's primary: its stdin (commands) and stdout (answers); -1 otherwise */
} server;

/* compare_node.c: where the Node executable and the cluster script are (set from --node/--node-script). */
extern const char *node_executable;
extern const char *node_script;
int node_server_start(server *s, const char **what);
/* Switches a running cluster's workers to another handler (a Node cluster costs far more to start than to switch). */
int node_server_switch(server *s, handler_kind handler, uint64_t burn_iterations, const char **what);
void node_server_stop(server *s);

/* compare_server.c */
uint64_t calibrate_burn(unsigned burn_us);
/* Returns 0, or an errno with *what naming the failed step. Always safe to stop afterwards. */
int server_start(server *s, const char **what);
/* SIGCONT then SIGKILL every process of the model and reap it. */
void server_stop(server *s);
int count_listeners(int port);

/* Every child registers here at fork, so a signal or exit can kill them all. */
pid_t fork_tracked(int group);
void track_child(pid_t pid);
/* A child that leads its own process group (a Node primary and its cluster workers): signalled as a group. */
void track_group(pid_t pid);
void untrack_child(pid_t pid);
void kill_tracked_children(void);

/* compare_client.c */
typedef enum { STATUS_OK = 0, STATUS_TIMEOUT = 1, STATUS_ERROR = 2, STATUS_CUT_OFF = 3 } conn_status;

typedef struct {
  uint32_t start_us; /* from the start of the measured window (connections before it are not recorded) */
  uint32_t latency_us; /* connect() to the first reply byte; to the end for failures */
  int16_t worker; /* -1 when no reply */
  uint16_t source_port;
  uint8_t status;
  int16_t err; /* errno for STATUS_ERROR */
} conn_sample;

typedef struct {
  int port;
  int concurrency; /* closed loop: always this many in flight */
  unsigned rate; /* > 0: open loop, this many new connections per second (concurrency is then the cap) */
  uint64_t max_connections; /* 0: no count limit */
  uint64_t warmup_ns;
  uint64_t measure_ns;
  uint64_t timeout_ns;
  /* Stall: SIGSTOP stall_pid at stall_at_ns into the measured window, SIGCONT stall_ns later. */
  pid_t stall_pid;
  uint64_t stall_at_ns;
  uint64_t stall_ns;
  /* Called when the measured window opens (edge 0) and closes (edge 1): server CPU snapshots. */
  void (*mark)(void *context, int edge);
  void *mark_context;
} load_spec;

typedef struct {
  conn_sample *samples;
  size_t count;
  size_t capacity;
  uint64_t completed_in_window; /* replies received inside the measured window */
  uint64_t elapsed_ns; /* measured window as it really ran */
  uint64_t client_cpu_ns; /* this process's CPU during the measured window */
  uint64_t stopped_ns; /* stall: how long the worker really was stopped */
  int resumed; /* stall: SIGCONT was sent */
  int interrupted;
} load_result;

int run_load(const load_spec *spec, load_result *out);
void free_load(load_result *r);

extern volatile sig_atomic_t compare_interrupted;
uint64_t now_ns(void);

#endif /* REUSEPORT_COMPARE_H */
