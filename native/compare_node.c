/*
 * The Node cluster models (reuseport compare --with-node). The orchestrator
 * starts a Node primary (src/compare/node-cluster.ts) with the Node that runs
 * `reuseport`; the primary forks the cluster workers, which run the C
 * handler's steps (the same calibrated burn through the addon, the same slow
 * sleep, the same two-byte reply) and close first. A running cluster changes
 * handler on a command on its primary's stdin, so one cluster serves the
 * order, light, heavy and stall phases. The primary leads its own process
 * group, so the whole cluster is stopped with one signal, and this process is
 * a child subreaper (compare_main.c), so the orphaned workers are reaped here
 * rather than left as zombies for init.
 */
#include "compare.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *node_executable = NULL;
const char *node_script = NULL;

/* Starting Node and forking its workers takes 50-100 ms on a quiet machine, seconds on a loaded one. */
#define NODE_START_TIMEOUT_MS 20000

static const char *policy_of(model_kind model) {
  switch (model) {
    case MODEL_NODE_CLUSTER_RR: return "rr";
    case MODEL_NODE_SCHED_NONE: return "none";
    default: return "reuseport";
  }
}

static const char *handler_name(handler_kind handler) {
  switch (handler) {
    case HANDLER_HEAVY: return "heavy";
    case HANDLER_SLOW: return "slow";
    default: return "light";
  }
}

/* Reads one line ("PORT PRIMARY_PID WORKER_PID...", "ok", or "error WHAT") within the timeout. */
static int read_ready_line(int fd, char *line, size_t size) {
  size_t used = 0;
  uint64_t deadline = now_ns() + (uint64_t)NODE_START_TIMEOUT_MS * 1000000ull;
  while (used + 1 < size && !compare_interrupted) {
    uint64_t now = now_ns();
    if (now >= deadline) return ETIMEDOUT;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int ready = poll(&pfd, 1, (int)((deadline - now) / 1000000ull) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return ready == 0 ? ETIMEDOUT : errno;
    ssize_t n = read(fd, line + used, size - used - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return EIO;
    used += (size_t)n;
    line[used] = '\0';
    if (strchr(line, '\n') != NULL) return 0;
  }
  return compare_interrupted ? EINTR : EMSGSIZE;
}

/*
 * Reads the primary's next answer into line. Its "error WHAT" comes back as
 * EPROTO with the cluster's own reason, made safe for a JSON string, in *what.
 */
static int read_answer(const server *s, char *line, size_t size, const char *step, const char **what) {
  int err = read_ready_line(s->node_out, line, size);
  if (err != 0) {
    *what = step;
    return err;
  }
  if (strncmp(line, "error ", 6) != 0) return 0;
  static char reason[256];
  snprintf(reason, sizeof reason, "%s: %.200s", step, line + 6);
  for (char *c = reason; *c; c++) {
    if (*c == '\n') *c = '\0';
    else if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '\'';
  }
  *what = reason;
  return EPROTO;
}

static void close_channel(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

int node_server_start(server *s, const char **what) {
  s->dispatcher_pid = 0;
  memset(s->worker_pids, 0, sizeof s->worker_pids);
  s->port = 0;
  s->listeners = 0;
  s->node_in = s->node_out = -1;
  /* No shared counters: Node workers report nothing; the client's samples say who served what. */
  s->counters = calloc((size_t)s->workers + 1, sizeof(worker_counters));
  if (s->counters == NULL) {
    *what = "calloc";
    return ENOMEM;
  }
  if (node_executable == NULL || node_script == NULL) {
    *what = "node (no --node and --node-script)";
    return EINVAL;
  }
  int answers[2], commands[2];
  if (pipe2(answers, O_CLOEXEC) < 0) {
    *what = "pipe2";
    return errno;
  }
  if (pipe2(commands, O_CLOEXEC) < 0) {
    int err = errno;
    close(answers[0]);
    close(answers[1]);
    *what = "pipe2";
    return err;
  }
  pid_t pid = fork_tracked(1);
  if (pid < 0) {
    int err = errno;
    for (int i = 0; i < 2; i++) {
      close(answers[i]);
      close(commands[i]);
    }
    *what = "fork";
    return err;
  }
  if (pid == 0) {
    /* The handler's parameters come from here, so the Node workers burn and sleep exactly as the C ones. */
    char workers[16], iterations[32], slow_every[16], slow_sleep_ms[16];
    snprintf(workers, sizeof workers, "%d", s->workers);
    snprintf(iterations, sizeof iterations, "%llu", (unsigned long long)s->burn_iterations);
    snprintf(slow_every, sizeof slow_every, "%d", SLOW_EVERY);
    snprintf(slow_sleep_ms, sizeof slow_sleep_ms, "%d", SLOW_SLEEP_MS);
    if (dup2(answers[1], STDOUT_FILENO) < 0 || dup2(commands[0], STDIN_FILENO) < 0) _exit(127);
    execl(node_executable, node_executable, node_script, policy_of(s->model), workers, handler_name(s->handler),
          iterations, slow_every, slow_sleep_ms, (char *)NULL);
    _exit(127);
  }
  s->dispatcher_pid = pid;
  close(answers[1]);
  close(commands[0]);
  s->node_out = answers[0];
  s->node_in = commands[1];
  char line[1024];
  int err = read_answer(s, line, sizeof line, "node start", what);
  if (err != 0) return err;
  char *cursor = line;
  char *end;
  long port = strtol(cursor, &end, 10);
  long primary = end != cursor ? strtol(end, &cursor, 10) : 0;
  if (port <= 0 || port > 65535 || primary != pid) {
    *what = "node start (the cluster did not listen)";
    return EPROTO;
  }
  for (int i = 0; i < s->workers; i++) {
    long worker = strtol(cursor, &end, 10);
    if (end == cursor || worker <= 0) {
      *what = "node start (a worker is missing)";
      return EPROTO;
    }
    s->worker_pids[i] = (pid_t)worker;
    cursor = end;
  }
  s->port = (int)port;
  s->listeners = count_listeners(s->port);
  return 0;
}

/* Writes "handler KIND ITERATIONS" to the primary and waits for "ok" (every worker switched) or "error WHAT". */
int node_server_switch(server *s, handler_kind handler, uint64_t burn_iterations, const char **what) {
  char command[64];
  int length = snprintf(command, sizeof command, "handler %s %llu\n", handler_name(handler),
                        (unsigned long long)burn_iterations);
  ssize_t written;
  do {
    written = write(s->node_in, command, (size_t)length);
  } while (written < 0 && errno == EINTR);
  if (written != length) {
    *what = "node switch (write)";
    return written < 0 ? errno : EIO;
  }
  char line[256];
  int err = read_answer(s, line, sizeof line, "node switch", what);
  if (err != 0) return err;
  if (strcmp(line, "ok\n") != 0) {
    *what = "node switch (no ok)";
    return EPROTO;
  }
  s->handler = handler;
  s->burn_iterations = burn_iterations;
  return 0;
}

void node_server_stop(server *s) {
  pid_t primary = s->dispatcher_pid;
  if (primary > 0) {
    kill(-primary, SIGCONT);
    kill(-primary, SIGKILL);
    while (waitpid(primary, NULL, 0) < 0 && errno == EINTR) {
    }
    untrack_child(primary);
    /* The primary's exit made its workers our children (subreaper): reap them too. */
    for (int i = 0; i < s->workers; i++) {
      if (s->worker_pids[i] > 0) {
        while (waitpid(s->worker_pids[i], NULL, 0) < 0 && errno == EINTR) {
        }
      }
    }
  }
  close_channel(&s->node_in);
  close_channel(&s->node_out);
  s->dispatcher_pid = 0;
  memset(s->worker_pids, 0, sizeof s->worker_pids);
  free(s->counters);
  s->counters = NULL;
}
