/*
 * StatsD over UDP, received and parsed off the JS thread.
 *
 * A thread of its own per socket reads datagrams with recvmmsg (BATCH at a
 * time) and parses their lines into a table that coalesces them until JS
 * drains it: per (name, kind), the sum of a counter's deltas (u64, wrapping as
 * the value does), a gauge's last set plus the adjustments after it, and a
 * timing's or histogram's samples in order. JS applies each entry once per
 * drain through the producer's one apply path (src/producers/statsd.ts), so
 * the tree, its caps and its statistics stay in JS; per line only the parse
 * and one hash lookup happen here.
 *
 * Only the plain forms are parsed here: a name of [A-Za-z0-9_.-], an integer
 * value, a type c, g, ms, h or d, nothing after it. Any other line (decimals,
 * sample rates, tags, bad lines) goes to JS as it is (a RAW record) and is
 * parsed there; it also closes the coalescing of every name (a new segment),
 * so the lines of one drain keep their effect in order.
 *
 * Memory is bounded: the table has room for TABLE_ENTRIES entries,
 * ARENA_BYTES of names and raw lines and MAX_SAMPLES samples. When the next
 * datagram might not fit, the thread waits for JS to drain (counted as a
 * stall); meanwhile datagrams wait in the socket buffer and what it cannot
 * hold the kernel drops, which SO_MEMINFO counts (kernelDrops).
 *
 * JS is woken through a threadsafe function when the table has something and
 * JS has drained since its last wake-up (at most once a millisecond unless the
 * table fills); it drains (statsdDrain) and applies in slices of its own.
 */
#include "statsfs.h"
#include "statsd_recv.h"

#include <arpa/inet.h>
#include <linux/sock_diag.h>
#include <netdb.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define BATCH 128
#define DGRAM_MAX 65536          /* a UDP payload is at most 65,507 bytes: never truncated */
#define HASH_SLOTS (1u << 17)
#define TABLE_ENTRIES (HASH_SLOTS / 2)
#define ARENA_BYTES (4u << 20)
#define MAX_SAMPLES (1u << 16)     /* also bounds the observe() calls of one slice: a record is applied whole */
#define SAMPLE_MAX 9007199254740992ull  /* 2^53: samples are kept as doubles */
/* After a batch that did not fill up, the thread lets datagrams gather this long
 * before it reads again, rather than sleeping in poll and being woken for each
 * one: a wake-up costs more than reading many datagrams (perf, 200k one-line
 * datagrams/s: a third of the thread's time was in the scheduler). The socket
 * buffer holds far more than arrives meanwhile. */
#define GATHER_NS 200000
/* JS is woken at most once per WAKE_NS (unless the table is a quarter full):
 * each wake-up is a drain with its fixed costs on both threads (perf: the
 * futex and eventfd wake-ups were a fifth of the daemon's time at 200k
 * datagrams/s with a wake-up per batch). */
#define WAKE_NS 1000000

typedef struct {
  uint32_t name_off, name_len, hash, lines;
  uint8_t kind, flags;
  uint64_t value;                /* counter sum, gauge value (two's complement) */
  uint32_t samples;              /* timing and histogram */
  size_t out;                    /* where its samples go in the drained buffer */
} entry;

typedef struct { uint32_t gen, idx; } slot;

typedef struct {
  int fd, wake;                  /* the socket; an eventfd that wakes the thread to stop */
  pthread_t thread;
  bool started, closed;
  napi_threadsafe_function notify;
  pthread_mutex_t mu;
  pthread_cond_t drained;
  /* under mu */
  bool stop, notified;
  uint64_t woke;                 /* when JS was last woken (CLOCK_MONOTONIC ns) */
  uint32_t count, arena_used, nsamples, gen;
  double stats[SS_COUNT];
  entry *entries;
  slot *slots;
  char *arena;
  uint32_t *sample_entry;
  double *sample_value;
  char *bufs;                    /* the thread's datagram buffers */
} receiver;

static bool name_char[256];

static void name_chars_init(void) {
  for (int c = 0; c < 256; c++)
    name_char[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

/* Room for any datagram of len bytes: at most one entry and one sample per
 * two bytes, and its bytes in the arena. */
static bool fits(receiver *r, size_t len) {
  size_t lines = len / 2 + 1;
  return r->count + lines <= TABLE_ENTRIES && r->arena_used + len <= ARENA_BYTES && r->nsamples + lines <= MAX_SAMPLES;
}

static void new_segment(receiver *r) {
  if (++r->gen == 0) {
    memset(r->slots, 0, HASH_SLOTS * sizeof(slot));
    r->gen = 1;
  }
}

static entry *append(receiver *r, uint8_t kind, const char *name, uint32_t len, uint32_t hash) {
  entry *e = &r->entries[r->count++];
  memcpy(r->arena + r->arena_used, name, len);
  *e = (entry){ .name_off = r->arena_used, .name_len = len, .hash = hash, .kind = kind };
  r->arena_used += len;
  return e;
}

static entry *lookup(receiver *r, uint8_t kind, const char *name, uint32_t len) {
  uint32_t h = 2166136261u ^ kind;
  for (uint32_t i = 0; i < len; i++) h = (h ^ (uint8_t)name[i]) * 16777619u;
  for (uint32_t i = h & (HASH_SLOTS - 1);; i = (i + 1) & (HASH_SLOTS - 1)) {
    slot *s = &r->slots[i];
    if (s->gen != r->gen) {
      s->gen = r->gen;
      s->idx = r->count;
      return append(r, kind, name, len, h);
    }
    entry *e = &r->entries[s->idx];
    if (e->hash == h && e->kind == kind && e->name_len == len && memcmp(r->arena + e->name_off, name, len) == 0) return e;
  }
}

static void raw_line(receiver *r, const char *line, uint32_t len) {
  append(r, SK_RAW, line, len, 0)->lines = 1;
  new_segment(r);
}

/* One line, no newline. The plain forms are coalesced; the rest go to JS. */
static void parse_line(receiver *r, const char *s, size_t n) {
  size_t i = 0;
  while (i < n && name_char[(uint8_t)s[i]]) i++;
  if (i == 0 || i >= n || s[i] != ':') goto raw;
  uint32_t name_len = i++;
  char sign = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) sign = s[i++];
  size_t digits = i;
  uint64_t mag = 0;
  for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
    if (__builtin_mul_overflow(mag, 10, &mag) || __builtin_add_overflow(mag, (uint64_t)(s[i] - '0'), &mag)) goto raw;
  if (i == digits || i + 1 >= n || s[i] != '|') goto raw;
  const char *t = s + i + 1;
  size_t tl = n - i - 1;
  uint8_t kind;
  if (tl == 1 && t[0] == 'c') kind = SK_COUNTER;
  else if (tl == 1 && t[0] == 'g') kind = SK_GAUGE;
  else if (tl == 1 && (t[0] == 'h' || t[0] == 'd')) kind = SK_HISTOGRAM;
  else if (tl == 2 && t[0] == 'm' && t[1] == 's') kind = SK_TIMING;
  else goto raw;

  uint64_t v = mag;
  switch (kind) {
  case SK_GAUGE:
    if (mag > (sign == '-' ? (uint64_t)1 << 63 : (uint64_t)INT64_MAX)) goto raw;
    if (sign == '-') v = 0 - mag;
    break;
  case SK_TIMING:                /* milliseconds kept as whole µs, at most 2^53 */
    if (sign || mag > SAMPLE_MAX / 1000) goto raw;
    v = mag * 1000;
    break;
  default:
    if (sign || (kind == SK_HISTOGRAM && mag > SAMPLE_MAX)) goto raw;
  }
  entry *e = lookup(r, kind, s, name_len);
  e->lines++;
  switch (kind) {
  case SK_COUNTER:
    e->value += v;
    break;
  case SK_GAUGE:
    if (sign) e->value += v;
    else {
      e->value = v;
      e->flags |= STATSD_FLAG_SET;
    }
    break;
  default:
    r->sample_entry[r->nsamples] = (uint32_t)(e - r->entries);
    r->sample_value[r->nsamples++] = (double)v;
    e->samples++;
  }
  return;
raw:
  raw_line(r, s, (uint32_t)n);
}

/* Every non-empty line of a datagram ('\n' or "\r\n" separated), as forEachLine splits them. */
static void parse_datagram(receiver *r, const char *p, size_t len) {
  const char *end = p + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', end - p);
    const char *stop = nl ? nl : end;
    const char *le = stop;
    if (le > p && le[-1] == '\r') le--;
    if (le > p) parse_line(r, p, le - p);
    p = stop + 1;
  }
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* Under mu: wakes JS unless it has been woken since its last drain, or (unless
 * forced) it was woken less than WAKE_NS ago and the table has room. */
static void wake_js(receiver *r, bool force) {
  if (r->notified || r->count == 0) return;
  uint64_t now = now_ns();
  bool roomy = r->count < TABLE_ENTRIES / 4 && r->arena_used < ARENA_BYTES / 4 && r->nsamples < MAX_SAMPLES / 4;
  if (!force && roomy && now - r->woke < WAKE_NS) return;
  r->notified = true;
  r->woke = now;
  napi_call_threadsafe_function(r->notify, NULL, napi_tsfn_nonblocking);
}

/* Under mu: how long poll may sleep: until JS is due a wake-up for what waits in the table. */
static int poll_ms(receiver *r) {
  if (r->notified || r->count == 0) return -1;
  uint64_t since = now_ns() - r->woke;
  return since >= WAKE_NS ? 0 : (int)((WAKE_NS - since + 999999) / 1000000);
}

static void *recv_thread(void *arg) {
  receiver *r = arg;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BATCH; i++) {
    iov[i] = (struct iovec){ .iov_base = r->bufs + (size_t)i * DGRAM_MAX, .iov_len = DGRAM_MAX };
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  for (;;) {
    int n = recvmmsg(r->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        pthread_mutex_lock(&r->mu);
        r->stats[SS_ERRORS]++;
        pthread_mutex_unlock(&r->mu);
      }
      bool failed = n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
      pthread_mutex_lock(&r->mu);
      int ms = poll_ms(r);
      pthread_mutex_unlock(&r->mu);
      struct pollfd fds[2] = { { .fd = r->fd, .events = POLLIN }, { .fd = r->wake, .events = POLLIN } };
      int ready = poll(fds, 2, failed && (ms < 0 || ms > 100) ? 100 : ms);
      if (fds[1].revents) break;
      if (ready == 0) {
        pthread_mutex_lock(&r->mu);
        wake_js(r, true);
        pthread_mutex_unlock(&r->mu);
      }
      continue;
    }
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < n && !r->stop; i++) {
      size_t len = msgs[i].msg_len;
      while (!fits(r, len) && !r->stop) {
        r->stats[SS_STALLS]++;
        wake_js(r, true);
        pthread_cond_wait(&r->drained, &r->mu);
      }
      if (r->stop) break;
      parse_datagram(r, iov[i].iov_base, len);
      r->stats[SS_PACKETS]++;
      r->stats[SS_BYTES] += len;
    }
    bool stop = r->stop;
    wake_js(r, false);
    pthread_mutex_unlock(&r->mu);
    if (stop) break;
    if (n < BATCH) {
      struct timespec gather = { 0, GATHER_NS };
      nanosleep(&gather, NULL);
    }
  }
  return NULL;
}

/* ------------------------------------------------------------------ */
/* N-API                                                               */

static void receiver_free(receiver *r) {
  if (r->started) {
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->drained);
    pthread_mutex_unlock(&r->mu);
    uint64_t one = 1;
    if (write(r->wake, &one, sizeof one) < 0) { /* the thread is woken all the same by the stop flag at its next batch */ }
    pthread_join(r->thread, NULL);
    r->started = false;
  }
  if (r->fd >= 0) close(r->fd);
  if (r->wake >= 0) close(r->wake);
  r->fd = r->wake = -1;
  free(r->entries);
  free(r->slots);
  free(r->arena);
  free(r->sample_entry);
  free(r->sample_value);
  free(r->bufs);
  r->entries = NULL;
  r->slots = NULL;
  r->arena = NULL;
  r->sample_entry = NULL;
  r->sample_value = NULL;
  r->bufs = NULL;
}

static void finalize_receiver(napi_env env, void *data, void *hint) {
  receiver *r = data;
  if (!r->closed) {
    receiver_free(r);
    if (r->notify) napi_release_threadsafe_function(r->notify, napi_tsfn_release);
  }
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->drained);
  free(r);
}

static void set_u32(napi_env env, napi_value obj, const char *name, uint32_t n) {
  napi_value v;
  napi_create_uint32(env, n, &v);
  napi_set_named_property(env, obj, name, v);
}

static receiver *get_receiver(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    throw_code(env, "EINVAL", "not a statsd receiver handle");
    return NULL;
  }
  receiver *r = p;
  if (r->closed) {
    throw_code(env, "EBADF", "the statsd receiver is closed");
    return NULL;
  }
  return r;
}

/* A bound, non-blocking UDP socket on host:port with the receive buffer asked, or -errno. */
static int bind_udp(const char *host, const char *port, int rcvbuf) {
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
  struct addrinfo *ai;
  int rc = getaddrinfo(host, port, &hints, &ai);
  if (rc != 0) return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
  int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int e = 0;
  if (fd < 0) e = errno;
  else {
    int half = rcvbuf > 1 ? rcvbuf / 2 : 1;  /* the kernel doubles what it is asked; 0: its default */
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &half, sizeof half);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) e = errno;
  }
  freeaddrinfo(ai);
  if (e) {
    if (fd >= 0) close(fd);
    return -e;
  }
  return fd;
}

/* statsdOpen(host, port, rcvbuf, notify) → { handle, port, rcvbuf }: binds and
 * starts the thread (port: the one bound; rcvbuf: the buffer the kernel gave);
 * notify() is called (no arguments) when there is something to drain. */
napi_value js_statsd_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char host[256];
  size_t hl = 0;
  napi_valuetype t;
  if (argc < 4 || napi_get_value_string_utf8(env, argv[0], host, sizeof host, &hl) != napi_ok || napi_typeof(env, argv[3], &t) != napi_ok || t != napi_function)
    return throw_code(env, "EINVAL", "statsdOpen(host: string, port: number, rcvbuf: number, notify: () => void)");
  double port = get_num(env, argv[1], -1), rcvbuf = get_num(env, argv[2], 0);
  if (!(port >= 0 && port <= 65535) || !(rcvbuf >= 0 && rcvbuf <= INT32_MAX)) return throw_code(env, "EINVAL", "statsdOpen: bad port or rcvbuf");
  if (!name_char['a']) name_chars_init();

  char ports[8];
  snprintf(ports, sizeof ports, "%d", (int)port);
  int fd = bind_udp(host, ports, (int)rcvbuf);
  if (fd < 0) return throw_code(env, errno_code(-fd), "cannot bind UDP %s:%s: %s", host, ports, strerror(-fd));

  receiver *r = calloc(1, sizeof *r);
  if (!r) {
    close(fd);
    return throw_code(env, "ENOMEM", "statsdOpen: out of memory");
  }
  r->fd = fd;
  r->wake = eventfd(0, EFD_CLOEXEC);
  r->gen = 1;
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->drained, NULL);
  r->entries = malloc(TABLE_ENTRIES * sizeof(entry));
  r->slots = calloc(HASH_SLOTS, sizeof(slot));
  r->arena = malloc(ARENA_BYTES);
  r->sample_entry = malloc(MAX_SAMPLES * sizeof(uint32_t));
  r->sample_value = malloc(MAX_SAMPLES * sizeof(double));
  r->bufs = malloc((size_t)BATCH * DGRAM_MAX);
  napi_value handle, name;
  napi_create_external(env, r, finalize_receiver, NULL, &handle);
  napi_create_string_utf8(env, "statsd", NAPI_AUTO_LENGTH, &name);
  if (r->wake < 0 || !r->entries || !r->slots || !r->arena || !r->sample_entry || !r->sample_value || !r->bufs ||
      napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, NULL, NULL, NULL, NULL, &r->notify) != napi_ok) {
    receiver_free(r);
    r->closed = true;
    return throw_code(env, "ENOMEM", "statsdOpen: out of memory");
  }
  if (pthread_create(&r->thread, NULL, recv_thread, r) != 0) {
    int e = errno;
    napi_release_threadsafe_function(r->notify, napi_tsfn_release);
    receiver_free(r);
    r->closed = true;
    return throw_code(env, errno_code(e), "statsdOpen: cannot start its thread");
  }
  r->started = true;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int bound = 0;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
    bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
  int got = 0;
  socklen_t gl = sizeof got;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &gl);
  napi_value result;
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "handle", handle);
  set_u32(env, result, "port", bound);
  set_u32(env, result, "rcvbuf", got);
  return result;
}

/* statsdDrain(handle) → Buffer of records (STATSD_HEADER layout), or null when
 * nothing arrived; empties the table and lets the thread go on. */
napi_value js_statsd_drain(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  receiver *r = argc == 1 ? get_receiver(env, argv[0]) : NULL;
  if (!r) return NULL;
  pthread_mutex_lock(&r->mu);
  r->notified = false;
  if (r->count == 0) {
    pthread_mutex_unlock(&r->mu);
    napi_get_null(env, &out);
    return out;
  }
  size_t size = 0;
  for (uint32_t i = 0; i < r->count; i++) {
    entry *e = &r->entries[i];
    size += STATSD_HEADER + ((e->name_len + 7) & ~7u);
    e->out = size;
    size += (size_t)e->samples * 8;
  }
  uint8_t *data;
  if (napi_create_buffer(env, size, (void **)&data, &out) != napi_ok) {
    pthread_mutex_unlock(&r->mu);
    return throw_code(env, "ENOMEM", "statsdDrain: out of memory");
  }
  size_t at = 0;
  for (uint32_t i = 0; i < r->count; i++) {
    entry *e = &r->entries[i];
    uint8_t *h = data + at;
    h[0] = e->kind;
    h[1] = e->flags;
    uint16_t nl = (uint16_t)e->name_len;
    memcpy(h + 2, &nl, 2);
    memcpy(h + 4, &e->lines, 4);
    if (e->kind == SK_TIMING || e->kind == SK_HISTOGRAM) {
      uint64_t c = e->samples;
      memcpy(h + 8, &c, 8);
    } else {
      memcpy(h + 8, &e->value, 8);
    }
    memcpy(h + STATSD_HEADER, r->arena + e->name_off, e->name_len);
    memset(h + STATSD_HEADER + e->name_len, 0, ((e->name_len + 7) & ~7u) - e->name_len);
    at = e->out + (size_t)e->samples * 8;
  }
  for (uint32_t k = 0; k < r->nsamples; k++) {
    entry *e = &r->entries[r->sample_entry[k]];
    memcpy(data + e->out, &r->sample_value[k], 8);
    e->out += 8;
  }
  r->count = r->arena_used = r->nsamples = 0;
  new_segment(r);
  pthread_cond_broadcast(&r->drained);
  pthread_mutex_unlock(&r->mu);
  return out;
}

/* statsdStats(handle) → Float64Array of SS_COUNT (statsdLayout.stats). */
napi_value js_statsd_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ab, out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  receiver *r = argc == 1 ? get_receiver(env, argv[0]) : NULL;
  if (!r) return NULL;
  double *d;
  napi_create_arraybuffer(env, SS_COUNT * sizeof(double), (void **)&d, &ab);
  pthread_mutex_lock(&r->mu);
  memcpy(d, r->stats, sizeof r->stats);
  pthread_mutex_unlock(&r->mu);
  uint32_t mem[SK_MEMINFO_VARS];
  socklen_t ml = sizeof mem;
  if (getsockopt(r->fd, SOL_SOCKET, SO_MEMINFO, mem, &ml) == 0 && ml > SK_MEMINFO_DROPS * sizeof(uint32_t)) d[SS_KERNEL_DROPS] = mem[SK_MEMINFO_DROPS];
  napi_create_typedarray(env, napi_float64_array, SS_COUNT, ab, 0, &out);
  return out;
}

/* statsdClose(handle): stops the thread and closes the socket (what was not drained is dropped). */
napi_value js_statsd_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  receiver *r = argc == 1 ? get_receiver(env, argv[0]) : NULL;
  if (!r) return NULL;
  receiver_free(r);
  napi_release_threadsafe_function(r->notify, napi_tsfn_release);
  r->closed = true;
  return NULL;
}

/* statsdLayout: { kinds: { raw: 0, … }, flagSet, header, stats: [names] }, checked by TypeScript. */
napi_value statsd_layout(napi_env env) {
  napi_value o, kinds, stats, v;
  napi_create_object(env, &o);
  napi_create_object(env, &kinds);
#define X(id, name, n) set_u32(env, kinds, name, n);
  STATSD_KINDS(X)
#undef X
  napi_set_named_property(env, o, "kinds", kinds);
  napi_create_array_with_length(env, SS_COUNT, &stats);
#define X(id, name) napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &v); napi_set_element(env, stats, SS_##id, v);
  STATSD_STATS(X)
#undef X
  napi_set_named_property(env, o, "stats", stats);
  set_u32(env, o, "header", STATSD_HEADER);
  set_u32(env, o, "flagSet", STATSD_FLAG_SET);
  return o;
}
