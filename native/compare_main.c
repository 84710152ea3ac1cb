/*
 * reuseport-compare: the orchestrator. It runs the phases in order, each
 * model in turn (light and heavy: in alternating rounds), and prints one JSON
 * line per measured run. It analyses nothing: src/compare/ does that.
 *
 * Usage: reuseport-compare [--netns] [--workers N] [--models a,b] [--phases a,b] [--scale F]
 *                          [--light-rounds N] [--heavy-rounds N] [--heavy-concurrency N] [--burn-us N]
 *                          [--node PATH --node-script PATH]
 *
 * Servers are started once per handler and kept across the rounds of a phase
 * (order and light share them), so rounds alternate between running models.
 * A Node cluster costs far more to start than a round lasts: it is started
 * once and switched to each phase's handler (stall and slow still stop it
 * after their run, since they leave a stopped or backlogged worker behind).
 * Exit: 0 done, 1 a model could not start, 2 bad arguments, 130 interrupted.
 */
#include "compare.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* Version of the JSON lines below; src/compare/protocol.ts checks it. */
#define PROTOCOL_VERSION 2

volatile sig_atomic_t compare_interrupted = 0;

enum { PHASE_ORDER, PHASE_LIGHT, PHASE_HEAVY, PHASE_STALL, PHASE_SLOW, PHASE_COUNT };
static const char *const phase_names[PHASE_COUNT] = {"order", "light", "heavy", "stall", "slow"};

typedef struct {
  int workers;
  int models[MODEL_COUNT];
  int model_count;
  int phases[PHASE_COUNT];
  double scale;
  int light_rounds;
  int heavy_rounds;
  int heavy_concurrency;
  unsigned burn_us;
  int netns;
} options;

/* Kill every child, then leave: a stopped worker is resumed first (kill_tracked_children). */
static void on_signal(int sig) {
  compare_interrupted = 1;
  kill_tracked_children();
  signal(sig, SIG_DFL);
  _exit(128 + sig);
}

static int parse_list(const char *text, const char *const *names, int count, int *chosen, int *n) {
  char copy[256];
  if (strlen(text) >= sizeof copy) return -1;
  strcpy(copy, text);
  *n = 0;
  for (char *save = NULL, *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    int found = -1;
    for (int i = 0; i < count; i++) {
      if (strcmp(item, names[i]) == 0) found = i;
    }
    if (found < 0) return -1;
    chosen[(*n)++] = found;
    if (*n > count) return -1;
  }
  return *n > 0 ? 0 : -1;
}

static int parse_args(int argc, char **argv, options *o) {
  *o = (options){.workers = 4, .scale = 1.0, .light_rounds = 3, .heavy_rounds = 3, .burn_us = 1000};
  for (int i = 0; i < C_MODEL_COUNT; i++) o->models[i] = i;
  o->model_count = C_MODEL_COUNT;
  for (int i = 0; i < PHASE_COUNT; i++) o->phases[i] = i != PHASE_SLOW;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--netns") == 0) {
      o->netns = 1;
      continue;
    }
    if (v == NULL) return -1;
    i++;
    if (strcmp(a, "--workers") == 0) {
      o->workers = atoi(v);
      if (o->workers < 1 || o->workers > COMPARE_MAX_WORKERS) return -1;
    } else if (strcmp(a, "--models") == 0) {
      if (parse_list(v, model_names, MODEL_COUNT, o->models, &o->model_count) < 0) return -1;
    } else if (strcmp(a, "--phases") == 0) {
      int chosen[PHASE_COUNT], n;
      if (parse_list(v, phase_names, PHASE_COUNT, chosen, &n) < 0) return -1;
      for (int k = 0; k < PHASE_COUNT; k++) o->phases[k] = 0;
      for (int k = 0; k < n; k++) o->phases[chosen[k]] = 1;
    } else if (strcmp(a, "--scale") == 0) {
      o->scale = atof(v);
      if (!(o->scale >= 0.01 && o->scale <= 10)) return -1;
    } else if (strcmp(a, "--light-rounds") == 0) {
      o->light_rounds = atoi(v);
      if (o->light_rounds < 1 || o->light_rounds > 50) return -1;
    } else if (strcmp(a, "--node") == 0) {
      node_executable = v;
    } else if (strcmp(a, "--node-script") == 0) {
      node_script = v;
    } else if (strcmp(a, "--heavy-rounds") == 0) {
      o->heavy_rounds = atoi(v);
      if (o->heavy_rounds < 1 || o->heavy_rounds > 50) return -1;
    } else if (strcmp(a, "--heavy-concurrency") == 0) {
      o->heavy_concurrency = atoi(v);
      if (o->heavy_concurrency < 1 || o->heavy_concurrency > 1024) return -1;
    } else if (strcmp(a, "--burn-us") == 0) {
      o->burn_us = (unsigned)atoi(v);
      if (o->burn_us < 10 || o->burn_us > 100000) return -1;
    } else {
      return -1;
    }
  }
  for (int m = 0; m < o->model_count; m++) {
    if (is_node_model(o->models[m]) && (node_executable == NULL || node_script == NULL)) return -1;
  }
  return 0;
}

/* ---- namespace setup: only ever inside a namespace this run created ---- */

static int bring_loopback_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  int err = 0;
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
    err = errno;
  } else if (!(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) err = errno;
  }
  close(fd);
  return err;
}

static void write_sysctl(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (write(fd, value, strlen(value)) < 0) {
    /* Best effort: the defaults work, with fewer ports. */
  }
  close(fd);
}

/* ---- per-process figures ---- */

typedef struct {
  uint64_t cpu_ns;
  uint64_t voluntary;
  uint64_t involuntary;
} process_figures;

static process_figures read_process(pid_t pid) {
  process_figures f = {0};
  clockid_t clock;
  struct timespec ts;
  if (clock_getcpuclockid(pid, &clock) == 0 && clock_gettime(clock, &ts) == 0) {
    f.cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *file = fopen(path, "r");
  if (file == NULL) return f;
  char line[256];
  while (fgets(line, sizeof line, file) != NULL) {
    unsigned long long value;
    if (sscanf(line, "voluntary_ctxt_switches: %llu", &value) == 1) f.voluntary = value;
    if (sscanf(line, "nonvoluntary_ctxt_switches: %llu", &value) == 1) f.involuntary = value;
  }
  fclose(file);
  return f;
}

enum { COUNTER_ACCEPTED, COUNTER_EMPTY, COUNTER_PASSED, COUNTER_ERRORS, COUNTER_KINDS };

/* What each process of the model did inside the measured window (differences of two snapshots). */
/* CPU time the whole machine spent busy (all processes, ours included), from /proc/stat. */
static uint64_t machine_busy_ns(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL) return 0;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait, &irq,
                   &softirq, &steal);
  fclose(f);
  if (got < 4) return 0;
  long tick = sysconf(_SC_CLK_TCK);
  return (user + nice + system + irq + softirq + steal) * (1000000000ull / (uint64_t)(tick > 0 ? tick : 100));
}

typedef struct {
  server *server;
  uint64_t machine_busy_at_start;
  uint64_t machine_busy_ns;
  process_figures at_start[COMPARE_MAX_WORKERS + 1];
  process_figures delta[COMPARE_MAX_WORKERS + 1];
  uint64_t counters_at_start[COMPARE_MAX_WORKERS + 1][COUNTER_KINDS];
  uint64_t counters[COMPARE_MAX_WORKERS + 1][COUNTER_KINDS];
} window_figures;

static pid_t process_of(const server *s, int i) { return i < s->workers ? s->worker_pids[i] : s->dispatcher_pid; }

static void read_counters(const worker_counters *c, uint64_t *out) {
  out[COUNTER_ACCEPTED] = atomic_load(&c->accepted);
  out[COUNTER_EMPTY] = atomic_load(&c->empty_wakeups);
  out[COUNTER_PASSED] = atomic_load(&c->fds_passed);
  out[COUNTER_ERRORS] = atomic_load(&c->errors);
}

static void mark_window(void *context, int edge) {
  window_figures *w = context;
  int total = w->server->workers + (w->server->dispatcher_pid ? 1 : 0);
  if (edge == 0) {
    w->machine_busy_at_start = machine_busy_ns();
  } else {
    w->machine_busy_ns = machine_busy_ns() - w->machine_busy_at_start;
  }
  for (int i = 0; i < total; i++) {
    process_figures now = read_process(process_of(w->server, i));
    uint64_t counters[COUNTER_KINDS];
    read_counters(&w->server->counters[i], counters);
    if (edge == 0) {
      w->at_start[i] = now;
      memcpy(w->counters_at_start[i], counters, sizeof counters);
    } else {
      w->delta[i] = (process_figures){now.cpu_ns - w->at_start[i].cpu_ns, now.voluntary - w->at_start[i].voluntary,
                                      now.involuntary - w->at_start[i].involuntary};
      for (int k = 0; k < COUNTER_KINDS; k++) w->counters[i][k] = counters[k] - w->counters_at_start[i][k];
    }
  }
}

/* ---- JSON output ---- */

typedef enum { FIELD_WORKER, FIELD_START, FIELD_LATENCY, FIELD_PORT, FIELD_STATUS, FIELD_ERRNO } sample_field;

static long sample_value(const conn_sample *s, sample_field f) {
  switch (f) {
    case FIELD_WORKER: return s->worker;
    case FIELD_START: return (long)s->start_us;
    case FIELD_LATENCY: return (long)s->latency_us;
    case FIELD_PORT: return s->source_port;
    case FIELD_STATUS: return s->status;
    case FIELD_ERRNO: return s->err;
  }
  return 0;
}

static void print_samples(const char *name, const load_result *r, sample_field f) {
  printf(",\"%s\":[", name);
  for (size_t i = 0; i < r->count; i++) printf(i ? ",%ld" : "%ld", sample_value(&r->samples[i], f));
  printf("]");
}

static void print_list(const char *name, const window_figures *w, int from, int to, int counter, int first) {
  printf("%s\"%s\":[", first ? "" : ",", name);
  for (int i = from; i < to; i++) {
    uint64_t v = counter == 0   ? w->counters[i][COUNTER_ACCEPTED]
                 : counter == 1 ? w->counters[i][COUNTER_EMPTY]
                 : counter == 2 ? w->counters[i][COUNTER_PASSED]
                 : counter == 3 ? w->counters[i][COUNTER_ERRORS]
                 : counter == 4 ? w->delta[i].cpu_ns
                 : counter == 5 ? w->delta[i].voluntary
                                : w->delta[i].involuntary;
    printf(i > from ? ",%llu" : "%llu", (unsigned long long)v);
  }
  printf("]");
}

/* Every figure is for the measured window only. */
static void print_process_block(const char *name, const window_figures *w, int from, int to) {
  static const char *const names[] = {"accepted", "emptyWakeups", "fdsPassed", "errors",
                                      "cpuNs", "voluntarySwitches", "involuntarySwitches"};
  printf(",\"%s\":{", name);
  for (int k = 0; k < 7; k++) print_list(names[k], w, from, to, k, k == 0);
  printf("}");
}

static void print_run(const char *phase, int round, const server *s, const window_figures *w, const load_spec *spec,
                      const load_result *r) {
  printf("{\"type\":\"run\",\"phase\":\"%s\",\"model\":\"%s\",\"round\":%d,\"port\":%d,\"listeners\":%d", phase,
         model_names[s->model], round, s->port, s->listeners);
  printf(",\"pids\":[");
  for (int i = 0; i < s->workers; i++) printf(i ? ",%d" : "%d", (int)s->worker_pids[i]);
  printf("],\"dispatcherPid\":%d", (int)s->dispatcher_pid);
  print_process_block("workers", w, 0, s->workers);
  if (s->dispatcher_pid) print_process_block("dispatcher", w, s->workers, s->workers + 1);
  printf(",\"load\":{\"concurrency\":%d,\"rate\":%u,\"warmupNs\":%llu,\"measureNs\":%llu,\"timeoutNs\":%llu}",
         spec->concurrency, spec->rate, (unsigned long long)spec->warmup_ns, (unsigned long long)spec->measure_ns,
         (unsigned long long)spec->timeout_ns);
  printf(",\"client\":{\"elapsedNs\":%llu,\"cpuNs\":%llu,\"completedInWindow\":%llu}", (unsigned long long)r->elapsed_ns,
         (unsigned long long)r->client_cpu_ns, (unsigned long long)r->completed_in_window);
  printf(",\"machineBusyNs\":%llu", (unsigned long long)w->machine_busy_ns);
  if (spec->stall_pid > 0) {
    printf(",\"stall\":{\"worker\":0,\"pid\":%d,\"atNs\":%llu,\"plannedNs\":%llu,\"stoppedNs\":%llu,\"resumed\":%s}",
           (int)spec->stall_pid, (unsigned long long)spec->stall_at_ns, (unsigned long long)spec->stall_ns,
           (unsigned long long)r->stopped_ns, r->resumed ? "true" : "false");
  }
  printf(",\"samples\":{\"count\":%zu", r->count);
  print_samples("worker", r, FIELD_WORKER);
  print_samples("startUs", r, FIELD_START);
  print_samples("latencyUs", r, FIELD_LATENCY);
  print_samples("sourcePort", r, FIELD_PORT);
  print_samples("status", r, FIELD_STATUS);
  print_samples("errno", r, FIELD_ERRNO);
  printf("}}\n");
  fflush(stdout);
}

static void print_failure(const char *phase, model_kind model, const char *what, int err) {
  printf("{\"type\":\"failure\",\"phase\":\"%s\",\"model\":\"%s\",\"syscall\":\"%s\",\"errno\":%d}\n", phase,
         model_names[model], what, err);
  fflush(stdout);
}

/* ---- phases ---- */

static uint64_t ms(const options *o, double value) { return (uint64_t)(value * o->scale * 1e6); }

/*
 * Running servers, one per model, kept across the rounds of a phase. A server
 * started for another handler is restarted.
 */
typedef struct {
  server s;
  int running;
  int failed; /* could not start in this phase: not retried, reported once */
} pooled_server;

static pooled_server pool[MODEL_COUNT];

static void release(model_kind model) {
  if (pool[model].running) server_stop(&pool[model].s);
  pool[model].running = 0;
}

/*
 * Stops every pooled server; keep_node leaves the Node clusters running for
 * the next phase, which switches their handler instead of starting them again.
 * A model that could not start is tried again (and reported again) in the next phase.
 */
static void release_all(int keep_node) {
  for (int m = 0; m < MODEL_COUNT; m++) {
    if (!(keep_node && is_node_model(m))) release(m);
    pool[m].failed = 0;
  }
}

/* A failed start or switch: the server is stopped, reported once, and not retried in this phase. */
static server *give_up(pooled_server *p, const char *phase, const char *what, int err, int *failures) {
  server_stop(&p->s);
  p->running = 0;
  p->failed = 1;
  if (!compare_interrupted) print_failure(phase, p->s.model, what, err);
  (*failures)++;
  return NULL;
}

static server *acquire(const options *o, const char *phase, model_kind model, handler_kind handler,
                       uint64_t burn_iterations, int *failures) {
  pooled_server *p = &pool[model];
  const char *what = "";
  if (p->running && p->s.handler != handler) {
    if (!is_node_model(model)) {
      release(model);
    } else {
      int err = node_server_switch(&p->s, handler, burn_iterations, &what);
      if (err != 0) return give_up(p, phase, what, err, failures);
    }
  }
  if (p->running || p->failed) return p->running ? &p->s : NULL;
  p->s = (server){.model = model, .workers = o->workers, .handler = handler, .burn_iterations = burn_iterations};
  int err = server_start(&p->s, &what);
  if (err != 0) return give_up(p, phase, what, err, failures);
  p->running = 1;
  return &p->s;
}

/* Runs one load against a running server and prints the run. Returns 0 or 1 (failure). */
static int measure(const char *phase, int round, server *s, load_spec spec) {
  window_figures w = {.server = s};
  spec.port = s->port;
  spec.mark = mark_window;
  spec.mark_context = &w;
  load_result r;
  int err = run_load(&spec, &r);
  if (err == 0 && !r.interrupted) print_run(phase, round, s, &w, &spec, &r);
  free_load(&r);
  if (err != 0) {
    print_failure(phase, s->model, "load", err);
    return 1;
  }
  return 0;
}

/*
 * Every model in turn, `rounds` times over (alternating rounds); fresh servers
 * per run when `fresh` (a stall or a slow worker leaves a backlog behind).
 */
static int run_phase(const options *o, int phase, int rounds, handler_kind handler, uint64_t burn_iterations,
                     load_spec spec, int fresh) {
  int failures = 0, runs = 0;
  uint64_t started = now_ns();
  for (int round = 0; round < rounds && !compare_interrupted; round++) {
    for (int m = 0; m < o->model_count && !compare_interrupted; m++) {
      model_kind model = o->models[m];
      server *s = acquire(o, phase_names[phase], model, handler, burn_iterations, &failures);
      if (s == NULL) continue;
      load_spec run_spec = spec;
      if (phase == PHASE_STALL) run_spec.stall_pid = s->worker_pids[0];
      failures += measure(phase_names[phase], round, s, run_spec);
      runs++;
      if (fresh) release(model);
    }
  }
  printf("{\"type\":\"phase\",\"phase\":\"%s\",\"runs\":%d,\"windowNs\":%llu,\"elapsedNs\":%llu}\n",
         phase_names[phase], runs,
         /* A count-bound phase (order) has no fixed window. */
         (unsigned long long)(spec.max_connections ? 0 : runs * (spec.warmup_ns + spec.measure_ns)),
         (unsigned long long)(now_ns() - started));
  fflush(stdout);
  return failures;
}

static int cpu_count(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

int main(int argc, char **argv) {
  options o;
  if (parse_args(argc, argv, &o) < 0) {
    fprintf(stderr, "reuseport-compare: bad arguments (see the usage at the top of compare_main.c)\n");
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* Node cluster workers outlive their primary for a moment: they become ours to reap. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  if (o.netns) {
    int err = bring_loopback_up();
    if (err != 0) {
      printf("{\"type\":\"failure\",\"phase\":\"setup\",\"model\":\"\",\"syscall\":\"SIOCSIFFLAGS lo\",\"errno\":%d}\n", err);
      return 1;
    }
    /* This namespace is ours alone: more client ports, and a backlog a stalled worker can fill. */
    write_sysctl("/proc/sys/net/ipv4/ip_local_port_range", "10000 65000");
    write_sysctl("/proc/sys/net/core/somaxconn", "4096");
  }
  uint64_t burn_iterations = calibrate_burn(o.burn_us);
  char netns[128] = "";
  ssize_t len = readlink("/proc/self/ns/net", netns, sizeof netns - 1);
  netns[len > 0 ? len : 0] = '\0';
  struct utsname uts;
  uname(&uts);
  /*
   * At most one request per core and per worker: the shared queue then never
   * leaves a request waiting while a worker is idle, so any queueing is the
   * hash's doing (see docs/compare.md).
   */
  int cores = cpu_count();
  int fair = o.workers < cores ? o.workers : cores;
  int heavy_concurrency = o.heavy_concurrency ? o.heavy_concurrency : (fair < 2 ? 2 : fair);
  printf("{\"type\":\"start\",\"protocol\":%d,\"cores\":%d,\"workers\":%d,\"kernel\":\"%s\",\"netns\":\"%s\","
         "\"pid\":%d,\"burnUs\":%u,\"burnIterations\":%llu,\"scale\":%g,\"lightRounds\":%d,\"heavyRounds\":%d,"
         "\"heavyConcurrency\":%d,\"slowEvery\":%d,\"slowSleepMs\":%d}\n",
         PROTOCOL_VERSION, cores, o.workers, uts.release, netns, (int)getpid(), o.burn_us,
         (unsigned long long)burn_iterations, o.scale, o.light_rounds, o.heavy_rounds, heavy_concurrency, SLOW_EVERY,
         SLOW_SLEEP_MS);
  fflush(stdout);

  /* Phase lengths: docs/compare.md lists them with the time budget they fit (src/compare/budget.ts). */
  int failures = 0;
  if (o.phases[PHASE_ORDER]) {
    int count = (int)(200 * o.scale);
    load_spec spec = {.concurrency = 1,
                      .max_connections = (uint64_t)(count < 40 ? 40 : count),
                      .measure_ns = 3000000000ull,
                      .timeout_ns = 1000000000ull};
    failures += run_phase(&o, PHASE_ORDER, 1, HANDLER_LIGHT, 0, spec, 0);
  }
  if (o.phases[PHASE_LIGHT] && !compare_interrupted) {
    load_spec spec = {.concurrency = 8, .warmup_ns = ms(&o, 20), .measure_ns = ms(&o, 100), .timeout_ns = 1000000000ull};
    failures += run_phase(&o, PHASE_LIGHT, o.light_rounds, HANDLER_LIGHT, 0, spec, 0);
  }
  /* The Node clusters stay up: heavy and stall switch their handler (stall stops each after its run). */
  release_all(1);
  if (o.phases[PHASE_HEAVY] && !compare_interrupted) {
    load_spec spec = {.concurrency = heavy_concurrency,
                      .warmup_ns = ms(&o, 50),
                      .measure_ns = ms(&o, 200),
                      .timeout_ns = 5000000000ull};
    failures += run_phase(&o, PHASE_HEAVY, o.heavy_rounds, HANDLER_HEAVY, burn_iterations, spec, 0);
    release_all(1);
  }
  if (o.phases[PHASE_STALL] && !compare_interrupted) {
    load_spec spec = {.concurrency = 2048,
                      .rate = 2000,
                      .warmup_ns = ms(&o, 30),
                      .measure_ns = ms(&o, 350),
                      .timeout_ns = 2000000000ull,
                      .stall_at_ns = ms(&o, 25),
                      .stall_ns = ms(&o, 300)};
    failures += run_phase(&o, PHASE_STALL, 1, HANDLER_LIGHT, 0, spec, 1);
  }
  if (o.phases[PHASE_SLOW] && !compare_interrupted) {
    /*
     * Worker 0 can serve about SLOW_EVERY requests per SLOW_SLEEP_MS: far less
     * than its 1/N of 1000/s. A model that keeps feeding it times those
     * connections out; a load-aware one sends them elsewhere.
     */
    load_spec spec = {.concurrency = 2048,
                      .rate = 1000,
                      .warmup_ns = ms(&o, 30),
                      .measure_ns = ms(&o, 250),
                      .timeout_ns = 300000000ull};
    failures += run_phase(&o, PHASE_SLOW, 1, HANDLER_SLOW, 0, spec, 1);
  }
  release_all(0);
  kill_tracked_children();
  printf("{\"type\":\"end\",\"failures\":%d}\n", failures);
  fflush(stdout);
  return failures ? 1 : 0;
}
