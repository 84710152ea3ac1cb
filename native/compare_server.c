/*
 * The accept models. Every model runs the same handler (handle_connection) in
 * forked worker processes; only the way a connection reaches a worker differs.
 * Listening sockets are opened in the orchestrator before fork(), so every
 * socket is bound and listening before the first connection.
 */
#include "compare.h"
#include "burn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *const model_names[MODEL_COUNT] = {
    "reuseport",  "shared-fifo",     "shared-lifo",     "shared-epoll",  "dispatcher", "dispatcher-least-loaded",
    "node-cluster-rr", "node-sched-none", "node-reuseport",
};

/* Enough for every process of one model (workers + dispatcher) with room to spare. */
#define TRACKED_MAX (COMPARE_MAX_WORKERS * 2 + 8)
static volatile pid_t tracked[TRACKED_MAX];
static volatile sig_atomic_t tracked_is_group[TRACKED_MAX];

static void track(pid_t pid, int group) {
  for (int i = 0; i < TRACKED_MAX; i++) {
    if (tracked[i] == 0) {
      tracked_is_group[i] = group;
      tracked[i] = pid;
      return;
    }
  }
}

void track_child(pid_t pid) { track(pid, 0); }
void track_group(pid_t pid) { track(pid, 1); }

void untrack_child(pid_t pid) {
  for (int i = 0; i < TRACKED_MAX; i++) {
    if (tracked[i] == pid) tracked[i] = 0;
  }
}

/* Async-signal-safe: kill() and waitpid() only. A stopped process is resumed first, then killed. */
void kill_tracked_children(void) {
  for (int i = 0; i < TRACKED_MAX; i++) {
    pid_t pid = tracked[i];
    if (pid > 0) {
      pid_t target = tracked_is_group[i] ? -pid : pid;
      kill(target, SIGCONT);
      kill(target, SIGKILL);
    }
  }
  for (int i = 0; i < TRACKED_MAX; i++) {
    pid_t pid = tracked[i];
    if (pid > 0) {
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
      }
      tracked[i] = 0;
    }
  }
}

/* ---- the handler every model shares ---- */

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Iterations of burn() that take about burn_us of CPU on this machine (best of five samples). */
uint64_t calibrate_burn(unsigned burn_us) {
  const uint64_t sample = 200000;
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 5; i++) {
    uint64_t t0 = thread_cpu_ns();
    burn(sample);
    uint64_t spent = thread_cpu_ns() - t0;
    if (spent > 0 && spent < best) best = spent;
  }
  if (best == UINT64_MAX) best = 1;
  return (uint64_t)burn_us * 1000ull * sample / best;
}

/*
 * The one handler: optional CPU work, a two-byte reply naming the worker, and
 * the server closes first, so the client never holds TIME_WAIT.
 */
static void handle_connection(const server *s, int worker, int fd) {
  if (s->handler == HANDLER_HEAVY) burn(s->burn_iterations);
  /* Each worker is its own process, so this counts the requests of this worker only. */
  static unsigned long handled;
  if (s->handler == HANDLER_SLOW && worker == 0 && ++handled % SLOW_EVERY == 0) {
    struct timespec pause = {SLOW_SLEEP_MS / 1000, (SLOW_SLEEP_MS % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) < 0 && errno == EINTR) {
    }
  }
  unsigned char reply[2] = {(unsigned char)worker, '\n'};
  if (send(fd, reply, sizeof reply, MSG_NOSIGNAL) < 0) atomic_fetch_add(&s->counters[worker].errors, 1);
  close(fd);
}

/* After EMFILE and other resource errors: pause instead of spinning. */
static void back_off(void) {
  struct timespec pause = {0, 1000000};
  nanosleep(&pause, NULL);
}

static void count_accept_error(worker_counters *c, int err) {
  if (err == EINTR) return;
  atomic_fetch_add(&c->errors, 1);
  if (err != ECONNABORTED && err != EAGAIN) back_off();
}

/* reuseport (own socket) and shared-fifo (shared socket): a blocking accept() loop. */
static void blocking_accept_worker(const server *s, int worker, int listen_fd) {
  worker_counters *c = &s->counters[worker];
  atomic_store(&c->ready, 1);
  for (;;) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      count_accept_error(c, errno);
      continue;
    }
    atomic_fetch_add(&c->accepted, 1);
    handle_connection(s, worker, fd);
  }
}

/* shared-lifo (EPOLLEXCLUSIVE) and shared-epoll: a private epoll per worker, one accept per wake-up, as NGINX does. */
static void epoll_accept_worker(const server *s, int worker, int listen_fd, int exclusive) {
  worker_counters *c = &s->counters[worker];
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN | (exclusive ? EPOLLEXCLUSIVE : 0), .data.fd = listen_fd};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
    atomic_fetch_add(&c->errors, 1);
    _exit(3);
  }
  atomic_store(&c->ready, 1);
  for (;;) {
    struct epoll_event got;
    int n = epoll_wait(ep, &got, 1, -1);
    if (n <= 0) continue;
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        atomic_fetch_add(&c->empty_wakeups, 1);
      } else {
        count_accept_error(c, errno);
      }
      continue;
    }
    atomic_fetch_add(&c->accepted, 1);
    handle_connection(s, worker, fd);
  }
}

/* One byte per descriptor over a SOCK_STREAM pair: reading one byte takes exactly one descriptor. */
static int send_fd(int channel, int fd) {
  char byte = 'f';
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  for (;;) {
    ssize_t n = sendmsg(channel, &msg, MSG_NOSIGNAL);
    if (n == 1) return 0;
    if (n < 0 && errno == EINTR) continue;
    return n < 0 ? errno : EIO;
  }
}

/* Returns the received descriptor, -1 on error, -2 when the dispatcher is gone. */
static int receive_fd(int channel) {
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t n = recvmsg(channel, &msg, MSG_CMSG_CLOEXEC);
  if (n == 0) return -2;
  if (n < 0) return -1;
  for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
      int fd;
      memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
      return fd;
    }
  }
  return -1;
}

/* dispatcher workers: take descriptors from the channel; least-loaded ones report each finished connection. */
static void dispatched_worker(const server *s, int worker, int channel) {
  worker_counters *c = &s->counters[worker];
  atomic_store(&c->ready, 1);
  for (;;) {
    int fd = receive_fd(channel);
    if (fd == -2) _exit(0);
    if (fd < 0) {
      count_accept_error(c, errno);
      continue;
    }
    atomic_fetch_add(&c->fds_passed, 1);
    atomic_fetch_add(&c->accepted, 1);
    handle_connection(s, worker, fd);
    if (s->model == MODEL_DISPATCHER_LEAST_LOADED) {
      char done = 'd';
      while (write(channel, &done, 1) < 0 && errno == EINTR) {
      }
    }
  }
}

static void pass_to(const server *s, worker_counters *mine, int channel, int fd) {
  int err = send_fd(channel, fd);
  if (err == 0) {
    atomic_fetch_add(&mine->fds_passed, 1);
  } else {
    atomic_fetch_add(&mine->errors, 1);
  }
  (void)s;
  close(fd);
}

/* dispatcher: one blocking accept() loop handing connections out in turn, without feedback. */
static void round_robin_dispatcher(const server *s, int listen_fd, const int *channels) {
  worker_counters *mine = &s->counters[s->workers];
  atomic_store(&mine->ready, 1);
  int next = 0;
  for (;;) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      count_accept_error(mine, errno);
      continue;
    }
    atomic_fetch_add(&mine->accepted, 1);
    pass_to(s, mine, channels[next], fd);
    next = (next + 1) % s->workers;
  }
}

/* dispatcher-least-loaded: the worker with the fewest unfinished connections (ties in turn). */
static void least_loaded_dispatcher(const server *s, int listen_fd, const int *channels) {
  worker_counters *mine = &s->counters[s->workers];
  int n = s->workers;
  struct pollfd pfds[COMPARE_MAX_WORKERS + 1];
  long outstanding[COMPARE_MAX_WORKERS] = {0};
  pfds[0] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
  for (int i = 0; i < n; i++) pfds[i + 1] = (struct pollfd){.fd = channels[i], .events = POLLIN};
  atomic_store(&mine->ready, 1);
  int next = 0;
  for (;;) {
    if (poll(pfds, (nfds_t)n + 1, -1) < 0) continue;
    for (int i = 0; i < n; i++) {
      if (pfds[i + 1].revents & POLLIN) {
        char done[256];
        ssize_t got = read(channels[i], done, sizeof done);
        if (got > 0) outstanding[i] -= got;
      }
    }
    if (!(pfds[0].revents & POLLIN)) continue;
    for (;;) {
      int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) count_accept_error(mine, errno);
        break;
      }
      atomic_fetch_add(&mine->accepted, 1);
      int best = next;
      for (int k = 1; k < n; k++) {
        int i = (next + k) % n;
        if (outstanding[i] < outstanding[best]) best = i;
      }
      pass_to(s, mine, channels[best], fd);
      outstanding[best]++;
      next = (best + 1) % n;
    }
  }
}

/* ---- starting and stopping a model ---- */

static int open_listener(int reuseport, int port, int nonblocking) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  int one = 1;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, COMPARE_BACKLOG) < 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

static int local_port(int fd) {
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) return -1;
  return ntohs(addr.sin_port);
}

/* In the child: die with the orchestrator, default signal dispositions. */
static void become_child(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * fork() with the orchestrator's termination signals blocked until the pid is
 * tracked, so an interrupt can never miss a child. A group child leads a new
 * process group (set on both sides of the fork, so neither can race).
 */
pid_t fork_tracked(int group) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGHUP);
  sigprocmask(SIG_BLOCK, &block, &old);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    if (group) setpgid(0, 0);
    become_child(parent);
    return 0;
  }
  if (pid > 0) {
    if (group) setpgid(pid, pid);
    track(pid, group);
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  return pid;
}

static void close_all(int *fds, int n) {
  for (int i = 0; i < n; i++) {
    if (fds[i] >= 0) close(fds[i]);
    fds[i] = -1;
  }
}

int server_start(server *s, const char **what) {
  if (is_node_model(s->model)) return node_server_start(s, what);
  int n = s->workers;
  int listeners[COMPARE_MAX_WORKERS];
  int channels[COMPARE_MAX_WORKERS][2];
  int listener_count = s->model == MODEL_REUSEPORT ? n : 1;
  for (int i = 0; i < COMPARE_MAX_WORKERS; i++) listeners[i] = channels[i][0] = channels[i][1] = -1;
  s->dispatcher_pid = 0;
  memset(s->worker_pids, 0, sizeof s->worker_pids);
  s->port = 0;
  s->listeners = 0;
  size_t shm_size = sizeof(worker_counters) * (size_t)(n + 1);
  s->counters = mmap(NULL, shm_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (s->counters == MAP_FAILED) {
    s->counters = NULL;
    *what = "mmap";
    return errno;
  }
  memset((void *)s->counters, 0, shm_size);

  int nonblocking = s->model == MODEL_SHARED_LIFO || s->model == MODEL_SHARED_EPOLL ||
                    s->model == MODEL_DISPATCHER_LEAST_LOADED;
  for (int i = 0; i < listener_count; i++) {
    listeners[i] = open_listener(s->model == MODEL_REUSEPORT, s->port, nonblocking);
    if (listeners[i] < 0) {
      int err = errno;
      close_all(listeners, listener_count);
      *what = "listen";
      return err;
    }
    if (s->port == 0) s->port = local_port(listeners[i]);
  }
  int dispatched = s->model == MODEL_DISPATCHER || s->model == MODEL_DISPATCHER_LEAST_LOADED;
  if (dispatched) {
    for (int i = 0; i < n; i++) {
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channels[i]) < 0) {
        int err = errno;
        close_all(listeners, listener_count);
        for (int k = 0; k < i; k++) close_all(channels[k], 2);
        *what = "socketpair";
        return err;
      }
      /*
       * A stopped worker's descriptors wait in this buffer; a full buffer
       * blocks the whole dispatcher. Make room for a bounded stall (FORCE
       * needs CAP_NET_ADMIN, which a namespace's root has).
       */
      int size = 4 << 20;
      if (setsockopt(channels[i][0], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0) {
        setsockopt(channels[i][0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
      }
    }
  }

  int err = 0;
  for (int i = 0; i < n && err == 0; i++) {
    pid_t pid = fork_tracked(0);
    if (pid < 0) {
      err = errno;
      *what = "fork";
      break;
    }
    if (pid == 0) {
      if (dispatched) {
        for (int k = 0; k < n; k++) {
          close(channels[k][0]);
          if (k != i) close(channels[k][1]);
        }
        close(listeners[0]);
        dispatched_worker(s, i, channels[i][1]);
      } else if (s->model == MODEL_REUSEPORT) {
        for (int k = 0; k < n; k++) {
          if (k != i) close(listeners[k]);
        }
        blocking_accept_worker(s, i, listeners[i]);
      } else if (s->model == MODEL_SHARED_FIFO) {
        blocking_accept_worker(s, i, listeners[0]);
      } else {
        epoll_accept_worker(s, i, listeners[0], s->model == MODEL_SHARED_LIFO);
      }
      _exit(0);
    }
    s->worker_pids[i] = pid;
  }
  if (err == 0 && dispatched) {
    pid_t pid = fork_tracked(0);
    if (pid < 0) {
      err = errno;
      *what = "fork";
    } else if (pid == 0) {
      int mine[COMPARE_MAX_WORKERS];
      for (int k = 0; k < n; k++) {
        close(channels[k][1]);
        mine[k] = channels[k][0];
      }
      if (s->model == MODEL_DISPATCHER) {
        round_robin_dispatcher(s, listeners[0], mine);
      } else {
        least_loaded_dispatcher(s, listeners[0], mine);
      }
      _exit(0);
    } else {
      s->dispatcher_pid = pid;
    }
  }
  close_all(listeners, listener_count);
  for (int i = 0; i < n; i++) close_all(channels[i], 2);
  if (err != 0) return err;

  /* Wait (bounded) until every process is in its loop. */
  int total = n + (dispatched ? 1 : 0);
  for (int waited_ms = 0; waited_ms < 5000 && !compare_interrupted; waited_ms++) {
    int ready = 0;
    for (int i = 0; i < total; i++) ready += atomic_load(&s->counters[i].ready);
    if (ready == total) {
      s->listeners = count_listeners(s->port);
      return 0;
    }
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
  }
  *what = "worker start";
  return ETIMEDOUT;
}

static void stop_pid(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGCONT);
  kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  untrack_child(pid);
}

void server_stop(server *s) {
  if (is_node_model(s->model)) {
    node_server_stop(s);
    return;
  }
  for (int i = 0; i < s->workers; i++) {
    stop_pid(s->worker_pids[i]);
    s->worker_pids[i] = 0;
  }
  stop_pid(s->dispatcher_pid);
  s->dispatcher_pid = 0;
  if (s->counters != NULL) {
    munmap((void *)s->counters, sizeof(worker_counters) * (size_t)(s->workers + 1));
    s->counters = NULL;
  }
}

/* LISTEN (state 0A) sockets on 127.0.0.1:port or any address, from the namespace's /proc/net/tcp. */
int count_listeners(int port) {
  FILE *f = fopen("/proc/net/tcp", "r");
  if (f == NULL) return -1;
  char line[512];
  int count = 0;
  if (fgets(line, sizeof line, f) == NULL) {
    fclose(f);
    return -1;
  }
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned local_port, state;
    char local_addr[16];
    if (sscanf(line, " %*d: %15[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", local_addr, &local_port, &state) == 3 &&
        (int)local_port == port && state == 0x0A) {
      count++;
    }
  }
  fclose(f);
  return count;
}
