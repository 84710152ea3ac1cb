/*
 * c-server HOST PORT WORKERS [tcp|udp]
 *
 * Reference SO_REUSEPORT server for `npm run bench`. UDP: each worker binds its
 * own SO_REUSEPORT datagram socket and answers every datagram with the
 * greeting (recvfrom + sendto), counting datagrams. TCP (the default): forks WORKERS
 * processes; each one opens its own listening socket with SO_REUSEADDR and
 * SO_REUSEPORT on HOST:PORT (backlog 4096) and loops on a blocking accept4(),
 * writes the greeting and closes. The server closes first, so TIME_WAIT
 * lands on the server side. The greeting is the one `reuseport serve` sends,
 * "reuseport worker=<n> pid=<pid> local=<host>:<port>\n", so `reuseport load`
 * attributes every connection to c-server as it would to its own workers: the
 * load comparison then does the same work on both sides.
 *
 * stdout: "listening pid=<pid>" once per worker when it is listening, and
 *         "accepted pid=<pid> count=<n>" per worker on SIGTERM/SIGINT.
 * The parent forwards SIGTERM/SIGINT to its workers and waits for them;
 * workers get SIGTERM if the parent dies, and the parent if its own parent
 * dies (PR_SET_PDEATHSIG).
 *
 * Build: cc -O2 -Wall -Wextra -o c-server c-server.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_WORKERS 256
#define BACKLOG 4096

static volatile sig_atomic_t stop_requested = 0;
static volatile unsigned long accepted = 0;
static pid_t children[MAX_WORKERS];
static int nchildren = 0;

/* Async-signal-safe decimal formatting. */
static size_t fmt_ulong(char *out, unsigned long v) {
  char tmp[24];
  size_t n = 0, i;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, buf, len);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    buf += w;
    len -= (size_t)w;
  }
}

/* Worker: report the count and exit right from the handler, so a signal that
 * lands between the loop check and accept4() cannot be lost. */
static void worker_on_signal(int sig) {
  (void)sig;
  char line[96];
  size_t n = 0;
  const char *a = "accepted pid=";
  const char *b = " count=";
  memcpy(line + n, a, strlen(a));
  n += strlen(a);
  n += fmt_ulong(line + n, (unsigned long)getpid());
  memcpy(line + n, b, strlen(b));
  n += strlen(b);
  n += fmt_ulong(line + n, accepted);
  line[n++] = '\n';
  write_all(STDOUT_FILENO, line, n);
  _exit(0);
}

static void parent_on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
  for (int i = 0; i < nchildren; i++)
    if (children[i] > 0) kill(children[i], SIGTERM);
}

static int udp = 0;

static int open_listener(const struct addrinfo *ai) {
  int fd = socket(ai->ai_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || (!udp && listen(fd, BACKLOG) < 0)) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static void worker(const struct addrinfo *ai, pid_t parent, long id) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = worker_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) {
    perror("c-server: prctl");
    _exit(1);
  }
  if (getppid() != parent) _exit(0); /* parent already gone */
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGTERM);
  sigaddset(&unblock, SIGINT);
  sigprocmask(SIG_UNBLOCK, &unblock, NULL);

  int lfd = open_listener(ai);
  if (lfd < 0) {
    fprintf(stderr, "c-server: listen: %s\n", strerror(errno));
    _exit(1);
  }

  pid_t me = getpid();
  struct sockaddr_storage local;
  socklen_t local_len = sizeof local;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (getsockname(lfd, (struct sockaddr *)&local, &local_len) == 0) {
    if (local.ss_family == AF_INET6) {
      struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&local;
      inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
      port = ntohs(v6->sin6_port);
    } else {
      struct sockaddr_in *v4 = (struct sockaddr_in *)&local;
      inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
      port = ntohs(v4->sin_port);
    }
  }
  char greeting[128];
  int glen = snprintf(greeting, sizeof greeting, local.ss_family == AF_INET6 ? "reuseport worker=%ld pid=%ld local=[%s]:%d\n" : "reuseport worker=%ld pid=%ld local=%s:%d\n", id, (long)me, host, port);
  char ready[64];
  int rlen = snprintf(ready, sizeof ready, "listening pid=%ld\n", (long)me);
  write_all(STDOUT_FILENO, ready, (size_t)rlen);
  while (udp) {
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    char datagram[2048];
    ssize_t n = recvfrom(lfd, datagram, sizeof datagram, 0, (struct sockaddr *)&peer, &peer_len);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "c-server: recvfrom: %s\n", strerror(errno));
      _exit(1);
    }
    /* Best effort, as over TCP: a full socket buffer drops the reply. */
    ssize_t w = sendto(lfd, greeting, (size_t)glen, 0, (struct sockaddr *)&peer, peer_len);
    (void)w;
    accepted = accepted + 1;
  }

  for (;;) {
    int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        usleep(1000);
        continue;
      }
      fprintf(stderr, "c-server: accept4: %s\n", strerror(errno));
      _exit(1);
    }
    /* Best effort: a peer that went away is not an error for the bench. */
    ssize_t w = send(cfd, greeting, (size_t)glen, MSG_NOSIGNAL);
    (void)w;
    close(cfd);
    accepted = accepted + 1;
  }
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "tcp") != 0 && strcmp(argv[4], "udp") != 0)) {
    fprintf(stderr, "usage: c-server HOST PORT WORKERS [tcp|udp]\n");
    return 2;
  }
  udp = argc == 5 && strcmp(argv[4], "udp") == 0;
  char *end = NULL;
  long workers = strtol(argv[3], &end, 10);
  if (*end != '\0' || workers < 1 || workers > MAX_WORKERS) {
    fprintf(stderr, "c-server: WORKERS must be 1..%d\n", MAX_WORKERS);
    return 2;
  }
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  int rc = getaddrinfo(argv[1], argv[2], &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "c-server: bad address %s:%s: %s\n", argv[1], argv[2], gai_strerror(rc));
    return 2;
  }

  /* Install the forwarding handler before forking so no signal is missed;
   * children replace it with their own. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = parent_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGINT);
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);

  setvbuf(stdout, NULL, _IONBF, 0);
  pid_t parent = getpid();
  /* If whoever started us dies, shut down too (the handler forwards it). */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &old);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  for (long i = 0; i < workers; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("c-server: fork");
      parent_on_signal(SIGTERM);
      break;
    }
    if (pid == 0) {
      worker(ai, parent, i + 1); /* installs its own handlers, then unblocks */
      _exit(0);
    }
    children[nchildren++] = pid;
  }
  sigprocmask(SIG_SETMASK, &old, NULL);

  int status = 0, failed = 0, alive = nchildren;
  while (alive > 0) {
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < nchildren; i++) {
      if (children[i] == pid) {
        children[i] = 0;
        alive--;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
        /* One worker failing (e.g. bind error) takes the server down. */
        if (!stop_requested && failed) parent_on_signal(SIGTERM);
      }
    }
  }
  freeaddrinfo(ai);
  return failed ? 1 : 0;
}
