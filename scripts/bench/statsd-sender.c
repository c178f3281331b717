/*
 * The StatsD benchmark's sender: counter lines (`<prefix>.c<i>:1|c`, i cycling over 20 names) in UDP
 * datagrams of 1 or more lines, sent with sendmmsg in batches of 32, at a fixed rate of datagrams per
 * second (paced against an absolute clock, so a late batch is caught up) or as fast as it can (rate 0).
 *
 *   statsd-sender <host> <port> <datagrams/s, 0 = max> <seconds> <lines per datagram> <prefix>
 *
 * Prints "sent <datagrams> lines <lines> seconds <s>" (datagrams the kernel accepted; on loopback a
 * datagram accepted is one queued to the receiver's socket, or counted in its drops).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define NAMES 20
#define BATCH 32

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s host port rate seconds lines prefix\n", argv[0]);
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  double rate = atof(argv[3]);
  double seconds = atof(argv[4]);
  int lines = atoi(argv[5]);
  const char *prefix = argv[6];
  if (lines < 1 || lines > 100) return 2;

  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &to.sin_addr) != 1) return 2;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
    perror("socket");
    return 1;
  }
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  /* NAMES distinct datagrams: datagram k starts at name k and takes `lines` names in turn */
  static char text[NAMES][4096];
  static struct iovec iov[NAMES];
  for (int k = 0; k < NAMES; k++) {
    size_t len = 0;
    for (int j = 0; j < lines; j++)
      len += snprintf(text[k] + len, sizeof text[k] - len, "%s%s.c%d:1|c", j ? "\n" : "", prefix, (k + j) % NAMES);
    iov[k].iov_base = text[k];
    iov[k].iov_len = len;
  }
  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof msgs);

  unsigned long long sent = 0;
  double start = now_s(), end = start + seconds;
  for (;;) {
    double t = now_s();
    if (t >= end) break;
    int n = BATCH;
    if (rate > 0) {
      double due = (t - start) * rate - (double)sent; /* datagrams owed by now */
      if (due < 1) {
        double wait = (1 - due) / rate;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait * 1e9)};
        if (wait > 0.0005) nanosleep(&ts, NULL);
        continue;
      }
      if (due < n) n = (int)due;
    }
    for (int i = 0; i < n; i++) {
      msgs[i].msg_hdr.msg_iov = &iov[(sent + i) % NAMES];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, msgs, n, 0);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED) continue;
      perror("sendmmsg");
      return 1;
    }
    sent += r;
  }
  printf("sent %llu lines %llu seconds %.6f\n", sent, sent * lines, now_s() - start);
  return 0;
}
