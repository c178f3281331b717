/*
 * StatsD over UDP, received and parsed in C (statsd_recv.c): the N-API
 * functions napi.c exports, and the layout of what statsdDrain returns.
 */
#ifndef STATSFS_STATSD_RECV_H
#define STATSFS_STATSD_RECV_H

#include <node_api.h>

/* Record kinds of a drained buffer (exported as statsdLayout.kinds). */
#define STATSD_KINDS(X)                                                         \
  X(RAW, "raw", 0)              /* a line JS parses itself: the name is the line */ \
  X(COUNTER, "counter", 1)      /* value: the u64 sum of the deltas */          \
  X(GAUGE, "gauge", 2)          /* value: s64; flags SET: set it, else add it */ \
  X(TIMING, "timing", 3)        /* count, then count f64 samples in µs */       \
  X(HISTOGRAM, "histogram", 4)  /* count, then count f64 samples */

enum {
#define X(id, name, v) SK_##id = v,
  STATSD_KINDS(X)
#undef X
};

/* Counters of statsdStats (a Float64Array, exported as statsdLayout.stats). */
#define STATSD_STATS(X)                                                         \
  X(PACKETS, "packets")         /* datagrams received */                        \
  X(BYTES, "bytes")             /* their bytes */                               \
  X(KERNEL_DROPS, "kernelDrops") /* datagrams the kernel dropped: the socket buffer was full (SO_MEMINFO) */ \
  X(STALLS, "stalls")           /* times the thread waited for JS to drain a full table */ \
  X(ERRORS, "errors")           /* recvmmsg failures other than EAGAIN/EINTR */

enum {
#define X(id, name) SS_##id,
  STATSD_STATS(X)
#undef X
  SS_COUNT
};

/* Each record: u8 kind, u8 flags, u16 name length, u32 lines, then 8 bytes
 * (the u64/s64 value, or the u32 sample count), the name padded to 8, then the
 * samples (f64) of a timing or histogram. */
#define STATSD_HEADER 16
#define STATSD_FLAG_SET 1

napi_value js_statsd_open(napi_env env, napi_callback_info info);
napi_value js_statsd_drain(napi_env env, napi_callback_info info);
napi_value js_statsd_stats(napi_env env, napi_callback_info info);
napi_value js_statsd_close(napi_env env, napi_callback_info info);
napi_value statsd_layout(napi_env env);

#endif
