/*
 * reader: the native client of the statsfs benchmarks (built and driven by scripts/bench/). Being a separate
 * C process, it measures the filesystem, not a JavaScript client.
 *
 *   reader ops <seconds> <processes> <path>
 *       <processes> forked processes each loop open + read to EOF + close on <path> for <seconds>, all
 *       starting together. Prints "ops <total> errors <total> seconds <longest run>". A cycle counts as an
 *       error when a call fails, or the content is empty or lacks its trailing newline (a torn value).
 *   reader lat <count> <warmup> <path> [<path>...]
 *       In this process, <warmup> untimed then <count> timed operations; one operation opens, reads to EOF
 *       and closes every <path> in turn. Prints "bytes <per operation>" then "us <latency> ..." with the
 *       <count> latencies in microseconds, in order.
 *
 * Exit status: 0 when the measurement ran (errors are reported, not fatal), 1 when it could not, 2 on bad
 * usage. Children die with their parent (PR_SET_PDEATHSIG) so an abandoned run stops loading the mount.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (128 * 1024) /* what cat(1) asks for */

static char buf[BUF_SIZE];

static double seconds_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* open + read to EOF + close; returns the bytes read, or -1 (and *last is the final byte read). */
static long long cycle(const char *path, char *last) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  long long total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return -1;
    }
    total += n;
    *last = buf[n - 1];
  }
  return close(fd) == 0 ? total : -1;
}

struct tally {
  unsigned long long ops, errors;
  double seconds;
};

static void worker(const char *path, double seconds, int go_fd, int out_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  char c;
  while (read(go_fd, &c, 1) < 0 && errno == EINTR) {
  } /* EOF when the parent closes its end: everyone starts at once */
  struct tally t = {0, 0, 0};
  double start = seconds_now(), end = start + seconds, now = start;
  while (now < end) {
    char last = 0;
    long long n = cycle(path, &last);
    if (n > 0 && last == '\n') t.ops++;
    else t.errors++;
    now = seconds_now();
  }
  t.seconds = now - start;
  /* one write of less than PIPE_BUF bytes: atomic, so the tallies of all workers never interleave */
  _exit(write(out_fd, &t, sizeof t) == (ssize_t)sizeof t ? 0 : 1);
}

static int run_ops(double seconds, int procs, const char *path) {
  int go[2], out[2];
  if (pipe(go) || pipe(out)) {
    perror("reader: pipe");
    return 1;
  }
  for (int i = 0; i < procs; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("reader: fork");
      return 1;
    }
    if (pid == 0) {
      close(go[1]);
      close(out[0]);
      worker(path, seconds, go[0], out[1]);
    }
  }
  close(go[0]);
  close(out[1]);
  close(go[1]); /* start */
  struct tally sum = {0, 0, 0}, t;
  int got = 0;
  ssize_t n;
  while ((n = read(out[0], &t, sizeof t)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n != (ssize_t)sizeof t) break;
    sum.ops += t.ops;
    sum.errors += t.errors;
    if (t.seconds > sum.seconds) sum.seconds = t.seconds;
    got++;
  }
  while (wait(NULL) > 0 || errno == EINTR) {
  }
  if (got != procs) {
    fprintf(stderr, "reader: %d of %d workers reported\n", got, procs);
    return 1;
  }
  printf("ops %llu errors %llu seconds %.6f\n", sum.ops, sum.errors, sum.seconds);
  return 0;
}

static int run_lat(long count, long warmup, int npaths, char **paths) {
  double *us = malloc((size_t)count * sizeof *us);
  if (!us) return 1;
  long long bytes = 0;
  for (long i = -warmup; i < count; i++) {
    double t0 = seconds_now();
    long long op_bytes = 0;
    for (int p = 0; p < npaths; p++) {
      char last;
      long long n = cycle(paths[p], &last);
      if (n <= 0) {
        fprintf(stderr, "reader: %s: %s\n", paths[p], n < 0 ? strerror(errno) : "empty");
        return 1;
      }
      op_bytes += n;
    }
    if (i >= 0) us[i] = (seconds_now() - t0) * 1e6;
    bytes = op_bytes;
  }
  printf("bytes %lld\nus", bytes);
  for (long i = 0; i < count; i++) printf(" %.1f", us[i]);
  printf("\n");
  free(us);
  return 0;
}

int main(int argc, char **argv) {
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* and the workers die with this process */
  if (argc == 5 && !strcmp(argv[1], "ops")) {
    double seconds = atof(argv[2]);
    int procs = atoi(argv[3]);
    if (seconds > 0 && procs > 0 && procs <= 1024) return run_ops(seconds, procs, argv[4]);
  } else if (argc >= 5 && !strcmp(argv[1], "lat")) {
    long count = atol(argv[2]), warmup = atol(argv[3]);
    if (count > 0 && warmup >= 0) return run_lat(count, warmup, argc - 4, argv + 4);
  }
  fprintf(stderr, "usage: %s ops <seconds> <processes> <path>\n       %s lat <count> <warmup> <path>...\n", argv[0], argv[0]);
  return 2;
}
