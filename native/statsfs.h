/*
 * statsfs_fuse: a small Node-API binding to the libfuse3 low-level API.
 *
 * Threads:
 *   - the JS thread: mounts, answers requests that need JS, unmounts;
 *   - one session thread per mount: reads requests from /dev/fuse and either
 *     answers them in C (read, readdir, flush, release, statfs, EPERM ops...,
 *     and open and getattr of the plain values JS registered: see "Stored values"
 *     in ops.c) or queues them to the JS thread. It never waits for JS;
 *   - one notifier thread per mount: sends kernel cache invalidations. They
 *     cannot be sent from the JS thread: the kernel may hold a directory lock
 *     for a lookup that only the JS thread can answer. A mark queued behind
 *     them tells JS when they have been sent (EV_SENT), so that a reply that
 *     made a cached name stale can wait until the kernel has dropped it.
 *
 * Requests queued to JS sit in a mutex-protected list; the session thread
 * wakes the JS thread with uv_async_send and the JS thread drains the whole
 * list per wakeup. Each request handed to JS gets a slot id (index plus
 * generation, so a late or duplicate reply is ignored instead of touching
 * freed memory). fuse_reply_* is thread safe in libfuse3, so the JS thread
 * answers directly.
 *
 * Files (this header is shared by all of them):
 *   contract.h   codes, flags and layouts shared with TypeScript; contract.c exports them
 *   session.c    the session: queue to JS, snapshots and budgets, threads, mount and shutdown
 *   ops.c        the low-level operations the session thread serves, stored values included
 *   dispatch.c   JS thread: slot ids of requests held by JS, events delivered to the dispatch function
 *   replies.c    N-API: the replies JS gives to requests
 *   napi.c       N-API: helpers, mount and the other exported functions, init()
 */
#ifndef STATSFS_H
#define STATSFS_H

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include "stored_table.h"
#include <node_api.h>
#include <uv.h>
#include "contract.h"

/* ------------------------------------------------------------------ */
/* Data structures                                                     */

/* A request or event on its way to JS. */
typedef struct item {
  struct item *next;
  fuse_req_t req;               /* NULL for events that need no reply */
  uint8_t ev, kind;
  fuse_ino_t ino;
  struct fuse_file_info fi;     /* open/opendir: returned with fh set */
  uint32_t uid;                 /* open: the caller, charged for the snapshot */
  struct snapshot *sn;          /* open: the snapshot being filled (see allocSnapshot) */
  union {
    struct { int valid; uint64_t size; uint32_t mode, uid, gid; } set;
    off_t off;                  /* write */
    int flags;                  /* open */
    int level;                  /* log */
    size_t count;               /* forget: number of (ino, nlookup) pairs */
    double mark;                /* sent: the mark of invalidationsSent */
  } u;
  size_t len;                   /* bytes in data */
  char data[];                  /* name (NUL-terminated), write data, forget pairs, log text */
} item;

/* Open file and directory handles are linked into per-session lists so
 * that whatever the kernel never released can be freed at unmount. */
typedef struct hnode { struct hnode *prev, *next; } hnode;

typedef struct snapshot {       /* fi->fh of an open file */
  hnode link;
  uint64_t written;             /* bytes the writes on this handle were answered with (JS thread) */
  uint32_t uid;                 /* charged to this user's budget ... */
  int charged;                  /* ... once charged (until freed) */
  size_t len;
  char data[];
} snapshot;

typedef struct dent {
  uint64_t ino;
  double size, mtime_ms;
  uint32_t mode;
  uint32_t name_off;
} dent;

typedef struct dirlist {        /* fi->fh of an open directory */
  hnode link;
  fuse_ino_t self, parent;
  uint32_t count;
  uint32_t uid, gid;
  double entry_timeout, attr_timeout;
  dent *ents;
  uint32_t *listed;             /* per entry: times readdirplus handed it to the kernel (a lookup each) */
  char *names;                  /* count NUL-terminated names back to back */
} dirlist;

typedef struct notif {
  struct notif *next;
  fuse_ino_t ino;
  double mark;                  /* > 0: no invalidation, tell JS (EV_SENT) that those before it are sent */
  size_t namelen;               /* 0: invalidate the inode, else the entry `name` */
  char name[];
} notif;

enum { S_MOUNTED, S_CLOSED };

typedef struct session {
  struct fuse_session *se;
  char *mountpoint;
  int flags;
  int state;                    /* JS thread only */
  int in_cleanup_hook;

  napi_env env;
  napi_ref dispatch;
  napi_async_context actx;
  uv_async_t *async;

  pthread_t loop_thread, notify_thread;
  int wake_fd;                  /* eventfd: asks the session thread to stop (when it polls) */
  int blocking;                 /* the session thread blocks in read(2); WAKE_SIGNAL stops it */
  int stop;                     /* atomic */

  /* queue to JS */
  pthread_mutex_t qmu;
  item *qhead, *qtail;
  int closing;                  /* under qmu: no more items may be queued */
  item *batch;                  /* JS thread: the rest of the batch being dispatched */

  /* requests held by JS: slot table, JS thread only */
  item **slots;
  uint32_t *gens, *freelist;
  uint32_t nslots, cap, nfree;

  /* notifier queue */
  pthread_mutex_t nmu;
  pthread_cond_t ncv;
  notif *nhead, *ntail;
  int nstop;

  /* open handles, and the bytes of snapshots each user holds: under hmu */
  pthread_mutex_t hmu;
  hnode files, dirs;
  uint64_t budget;              /* bytes of snapshots one uid may hold; 0: no limit */
  struct budget_use { uint32_t uid; uint64_t bytes; } *uses;   /* only users holding bytes */
  uint32_t nuses, capuses;

  /* stored values answered in C: under vmu */
  pthread_mutex_t vmu;
  stored_table stored;          /* ino -> slot and mode (stored_table.h) */
  double stored_attr[A_COUNT];  /* the attributes every registered value shares (ino, mode apart) */
  double stored_timeout;
  int stored_attr_set;
  const uint32_t *arena;        /* the SlotArena words; word 0 is its write sequence */
  size_t arena_words;
  napi_ref arena_ref;           /* JS thread only: keeps `arena`'s ArrayBuffer alive */

  /* readdir reply buffer, session thread only */
  char *dirbuf;
  size_t dirbuf_cap;

  uint64_t stats[ST_COUNT];     /* atomic */
} session;

#define SLOT_BITS 24
#define SLOT_SPAN ((uint64_t)1 << SLOT_BITS)
#define GEN_MASK ((1u << 28) - 1)  /* id = gen * 2^24 + index < 2^52: exact as a double */

static inline void stat_add(session *s, int i, uint64_t n) { __atomic_fetch_add(&s->stats[i], n, __ATOMIC_RELAXED); }
static inline void stat_sub(session *s, int i, uint64_t n) { __atomic_fetch_sub(&s->stats[i], n, __ATOMIC_RELAXED); }

/* ------------------------------------------------------------------ */
/* session.c                                                           */

/* libfuse log capture (process wide: fuse_set_log_func is global) */
void log_func(enum fuse_log_level level, const char *fmt, va_list ap);

/* open handles */
void list_init(hnode *h);
void list_add(session *s, hnode *h, hnode *n);
void list_del(session *s, hnode *n);

/* replies (any thread) */
void reply_err(session *s, fuse_req_t req, int kind, int err);
void finish(session *s, item *it);
void fail_item(session *s, item *it, int err);
int reply_with_handle(session *s, fuse_req_t req, struct fuse_file_info *fi, hnode *list, hnode *h, int gauge);
void reply_snapshot(session *s, fuse_req_t req, struct fuse_file_info *fi, snapshot *sn, uint32_t uid);

/* snapshots and the per-user budget */
snapshot *snapshot_new(const void *data, size_t len);
int budget_spent(session *s, uint32_t uid, uint64_t len);
int snapshot_charge(session *s, snapshot *sn, uint32_t uid);
void snapshot_free(session *s, snapshot *sn);

/* queue to JS */
item *item_new(fuse_req_t req, int ev, int kind, fuse_ino_t ino, size_t extra);
int enqueue(session *s, item *it);
void to_js(fuse_req_t req, item *it, int kind);
int queue_notif(session *s, fuse_ino_t ino, const char *name, size_t namelen, double mark);

/* lifecycle */
const char *errno_code(int e);
session *session_new(int flags);
const char *session_fuse_mount(session *s, const char *mnt, const char *opts, char *msg, size_t cap);
void session_start(session *s);
void shutdown_session(session *s);
void session_free(session *s);
void on_async_closed(uv_handle_t *h);

/* ------------------------------------------------------------------ */
/* ops.c                                                               */

extern const struct fuse_lowlevel_ops statsfs_ops;
void fill_stat(struct stat *st, uint64_t ino, uint32_t mode, uint64_t nlink, double size,
               uint32_t uid, uint32_t gid, double mtime, double ctime, double atime);

/* ------------------------------------------------------------------ */
/* dispatch.c                                                          */

item *slot_peek(session *s, double id);
item *slot_take(session *s, double id);
void on_async(uv_async_t *h);

/* ------------------------------------------------------------------ */
/* N-API helpers (napi.c)                                              */

#define ARGS(n)                                                                \
  size_t argc = (n);                                                           \
  napi_value argv[(n) > 0 ? (n) : 1];                                          \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);                        \
  for (size_t i_ = argc; i_ < (n); i_++) napi_get_undefined(env, &argv[i_]);

napi_value throw_code(napi_env env, const char *code, const char *fmt, ...);
double get_num(napi_env env, napi_value v, double dflt);
void *get_typed(napi_env env, napi_value v, napi_typedarray_type want, size_t *len);
session *get_session(napi_env env, napi_value v);
napi_value js_bool(napi_env env, bool b);
napi_value num(napi_env env, double v);

/* ------------------------------------------------------------------ */
/* Exported functions (replies.c)                                      */

napi_value js_reply_err(napi_env env, napi_callback_info info);
napi_value js_reply_entry(napi_env env, napi_callback_info info);
napi_value js_reply_attr(napi_env env, napi_callback_info info);
napi_value js_reply_open(napi_env env, napi_callback_info info);
napi_value js_alloc_snapshot(napi_env env, napi_callback_info info);
napi_value js_fill_snapshot(napi_env env, napi_callback_info info);
napi_value js_reply_opendir(napi_env env, napi_callback_info info);
napi_value js_reply_write(napi_env env, napi_callback_info info);

/* contract.c: the object init() exports as `contract` */
napi_value contract_object(napi_env env);

#endif
