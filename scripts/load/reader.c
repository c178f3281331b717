/*
 * reader: a small load generator for statsfs (built and driven by scripts/load.mjs).
 *
 *   reader <path> <readers> <seconds> <round-seconds>
 *
 * Forks <readers> children; each loops open + read-until-EOF + close on <path> until told to stop. A cycle
 * that completes is an op; a cycle with a failed open/read/close, or an empty read, or content that does not
 * end in a newline (a short read of a statsfs value) is an error. The first few failures are described on
 * stderr with their errno message.
 *
 * Children keep their counters in a shared anonymous mmap (one cache line each); the parent sums them at
 * every round boundary and prints one line per round on stdout, cumulative since the start:
 *
 *   START <readers>
 *   R <round> <elapsed-seconds> <ops> <errors>
 *   ...
 *   DONE <elapsed-seconds> <ops> <errors> <children-that-exited-abnormally>
 *
 * The run ends after <seconds>, or early on SIGINT/SIGTERM (the last round is then partial). Children die
 * with the parent (PR_SET_PDEATHSIG). Exit status: 0 when the load ran, 1 when it could not, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_READERS 4096
#define MAX_MESSAGES 5
#define START_TIMEOUT_S 10

struct counters {
  unsigned long long ops;
  unsigned long long errors;
  char pad[64 - 2 * sizeof(unsigned long long)];
};

struct shared {
  int ready;    /* children that have started */
  int go;       /* set by the parent once all are ready */
  int stop;     /* set by the parent at the end */
  int messages; /* failures described so far (all children) */
  char pad[64 - 4 * sizeof(int)];
  struct counters c[];
};

static struct shared *sh;
static volatile sig_atomic_t got_signal;

static void on_signal(int sig) { got_signal = sig; }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int load(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

static void describe(int id, const char *what, const char *path, int err) {
  if (__atomic_fetch_add(&sh->messages, 1, __ATOMIC_RELAXED) >= MAX_MESSAGES) return;
  if (err)
    dprintf(2, "reader %d: %s %s: %s\n", id, what, path, strerror(err));
  else
    dprintf(2, "reader %d: %s %s\n", id, what, path);
}

static void pause_briefly(void) {
  /* after a failure: do not spin a CPU on a broken mount */
  struct timespec ts = {0, 1000000};
  nanosleep(&ts, NULL);
}

static void child(int id, const char *path, pid_t parent) {
  static char buf[65536];
  struct counters *me = &sh->c[id];

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);
  signal(SIGINT, SIG_IGN); /* a Ctrl-C reaches the whole group; the parent decides when to stop */
  signal(SIGTERM, SIG_DFL);

  __atomic_fetch_add(&sh->ready, 1, __ATOMIC_RELEASE);
  while (!load(&sh->go) && !load(&sh->stop)) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }

  while (!load(&sh->stop)) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
      describe(id, "open", path, errno);
      __atomic_fetch_add(&me->errors, 1, __ATOMIC_RELAXED);
      pause_briefly();
      continue;
    }
    size_t total = 0;
    char last = 0;
    int bad = 0;
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        describe(id, "read", path, errno);
        bad = 1;
        break;
      }
      if (n == 0) break;
      total += (size_t)n;
      last = buf[n - 1];
    }
    if (close(fd) < 0 && !bad) {
      describe(id, "close", path, errno);
      bad = 1;
    }
    if (!bad && total == 0) {
      describe(id, "empty read of", path, 0);
      bad = 1;
    } else if (!bad && last != '\n') {
      describe(id, "short read (no trailing newline) of", path, 0);
      bad = 1;
    }
    if (bad) {
      __atomic_fetch_add(&me->errors, 1, __ATOMIC_RELAXED);
      pause_briefly();
    } else {
      __atomic_fetch_add(&me->ops, 1, __ATOMIC_RELAXED);
    }
  }
  _exit(0);
}

static void sum(int n, unsigned long long *ops, unsigned long long *errors) {
  unsigned long long o = 0, e = 0;
  for (int i = 0; i < n; i++) {
    o += __atomic_load_n(&sh->c[i].ops, __ATOMIC_RELAXED);
    e += __atomic_load_n(&sh->c[i].errors, __ATOMIC_RELAXED);
  }
  *ops = o;
  *errors = e;
}

static int positive(const char *text, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end || !(v > 0)) return 0;
  *out = v;
  return 1;
}

int main(int argc, char **argv) {
  double readers_d, seconds, round_s;
  if (argc != 5 || !positive(argv[2], &readers_d) || !positive(argv[3], &seconds) || !positive(argv[4], &round_s) ||
      readers_d != (int)readers_d || readers_d > MAX_READERS) {
    fprintf(stderr, "usage: %s <path> <readers 1..%d> <seconds> <round-seconds>\n", argv[0], MAX_READERS);
    return 2;
  }
  const char *path = argv[1];
  int n = (int)readers_d;
  setvbuf(stdout, NULL, _IOLBF, 0);

  /* die with the driver, so an abandoned run never keeps loading the mount */
  prctl(PR_SET_PDEATHSIG, SIGTERM);

  size_t size = sizeof(struct shared) + (size_t)n * sizeof(struct counters);
  sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) {
    perror("reader: mmap");
    return 1;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: a signal cuts the round's sleep short */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  pid_t self = getpid();
  pid_t *pids = calloc((size_t)n, sizeof(pid_t));
  if (!pids) {
    perror("reader: calloc");
    return 1;
  }
  int started = 0;
  for (; started < n; started++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("reader: fork");
      break;
    }
    if (pid == 0) child(started, path, self);
    pids[started] = pid;
  }

  int status = 0;
  if (started < n) {
    status = 1;
  } else {
    double wait_until = now() + START_TIMEOUT_S;
    while (load(&sh->ready) < n && !got_signal && now() < wait_until) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
    if (load(&sh->ready) < n) {
      fprintf(stderr, "reader: only %d of %d children started\n", load(&sh->ready), n);
      status = 1;
    }
  }

  double t0 = now();
  unsigned long long ops = 0, errors = 0;
  if (status == 0 && !got_signal) {
    __atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
    t0 = now();
    printf("START %d\n", n);
    int rounds = (int)(seconds / round_s);
    if (rounds * round_s < seconds - 1e-9) rounds++;
    for (int k = 1; k <= rounds && !got_signal; k++) {
      double end = t0 + (k * round_s < seconds ? k * round_s : seconds);
      for (;;) {
        double left = end - now();
        if (left <= 0 || got_signal) break;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL); /* EINTR: loop re-checks the signal and the time left */
      }
      sum(n, &ops, &errors);
      printf("R %d %.3f %llu %llu\n", k, now() - t0, ops, errors);
    }
  }

  __atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
  int abnormal = 0;
  for (int i = 0; i < started; i++) {
    int ws = 0;
    pid_t r;
    while ((r = waitpid(pids[i], &ws, 0)) < 0 && errno == EINTR) {
    }
    if (r < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) abnormal++;
  }
  sum(n, &ops, &errors);
  printf("DONE %.3f %llu %llu %d\n", now() - t0, ops, errors, abnormal);
  free(pids);
  return status;
}
