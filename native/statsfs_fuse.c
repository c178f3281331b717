/*
 * statsfs_fuse: a small Node-API binding to the libfuse3 low-level API.
 *
 * Threads:
 *   - the JS thread: mounts, answers requests that need JS, unmounts;
 *   - one session thread per mount: reads requests from /dev/fuse and either
 *     answers them in C (read, readdir, flush, release, statfs, EPERM ops...,
 *     and open and getattr of the plain values JS registered: see "Stored values")
 *     or queues them to the JS thread. It never waits for JS;
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
 */
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

/* ------------------------------------------------------------------ */
/* Statistics. Layout shared with src/fs/native.ts (OP_NAMES order).   */

enum op_kind {
  K_LOOKUP, K_FORGET, K_GETATTR, K_SETATTR, K_OPEN, K_READ, K_WRITE, K_FLUSH,
  K_RELEASE, K_OPENDIR, K_READDIR, K_RELEASEDIR, K_STATFS, K_OTHER, K_COUNT
};

enum {
  ST_REQUESTS = 0,              /* K_COUNT request counters */
  ST_ERRORS = K_COUNT,          /* K_COUNT error-reply counters */
  ST_BYTES_READ = 2 * K_COUNT,
  ST_OPEN_FILES,
  ST_OPEN_DIRS,
  ST_IN_FLIGHT,                 /* requests queued to or held by JS */
  ST_SNAPSHOT_BYTES,            /* bytes held by open files and by snapshots being filled */
  ST_OVER_BUDGET,               /* opens refused with EMFILE: the caller's snapshot budget was spent */
  ST_COUNT
};

/* Events passed to the JS dispatch function (shared with native.ts). */
enum {
  EV_LOOKUP, EV_GETATTR, EV_SETATTR, EV_OPENDIR, EV_OPEN, EV_WRITE,
  EV_FORGET, EV_ENDED, EV_LOG, EV_SENT
};

/* mount() flags (shared with native.ts). */
enum { MF_DEBUG = 1, MF_FORGET = 2 };

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
  int wake_fd;                  /* eventfd: asks the session thread to stop */
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
  double stored_attr[9];        /* the attributes every registered value shares (ino, mode apart) */
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

static void stat_add(session *s, int i, uint64_t n) { __atomic_fetch_add(&s->stats[i], n, __ATOMIC_RELAXED); }
static void stat_sub(session *s, int i, uint64_t n) { __atomic_fetch_sub(&s->stats[i], n, __ATOMIC_RELAXED); }

static void list_init(hnode *h) { h->prev = h->next = h; }

static void list_add(session *s, hnode *h, hnode *n) {
  pthread_mutex_lock(&s->hmu);
  n->next = h->next; n->prev = h; h->next->prev = n; h->next = n;
  pthread_mutex_unlock(&s->hmu);
}

static void list_del(session *s, hnode *n) {
  pthread_mutex_lock(&s->hmu);
  n->prev->next = n->next; n->next->prev = n->prev;
  pthread_mutex_unlock(&s->hmu);
}

/* ------------------------------------------------------------------ */
/* libfuse log capture (process wide: fuse_set_log_func is global)     */

static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_last_log[512];
static int g_last_errno;
static session *g_debug_session;   /* receives every log line when mounted with debug */

static int enqueue(session *s, item *it);

static void log_func(enum fuse_log_level level, const char *fmt, va_list ap) {
  int saved = errno;               /* libfuse logs right after the failing call */
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;

  pthread_mutex_lock(&g_log_mu);
  if (level <= FUSE_LOG_WARNING) {
    snprintf(g_last_log, sizeof g_last_log, "%s", msg);
    g_last_errno = saved;
  }
  if (g_debug_session) {
    item *it = calloc(1, sizeof *it + n + 1);
    if (it) {
      it->ev = EV_LOG;
      it->u.level = (int)level;
      it->len = n;
      memcpy(it->data, msg, n + 1);
      if (enqueue(g_debug_session, it) != 0) free(it);
    }
  }
  pthread_mutex_unlock(&g_log_mu);
  errno = saved;
}

static void log_reset(void) {
  pthread_mutex_lock(&g_log_mu);
  g_last_log[0] = 0;
  g_last_errno = 0;
  pthread_mutex_unlock(&g_log_mu);
}

/* ------------------------------------------------------------------ */
/* Replies (any thread)                                                */

static void reply_err(session *s, fuse_req_t req, int kind, int err) {
  if (err) stat_add(s, ST_ERRORS + kind, 1);
  fuse_reply_err(req, err);
}

static void snapshot_free(session *s, snapshot *sn);

/* A request held by JS has been answered: drop it, and the snapshot it was
 * filling if it was not handed over. */
static void finish(session *s, item *it) {
  stat_sub(s, ST_IN_FLIGHT, 1);
  if (it->sn) snapshot_free(s, it->sn);
  free(it);
}

static void fail_item(session *s, item *it, int err) {
  if (it->req) {
    reply_err(s, it->req, it->kind, err);
    finish(s, it);
  } else {
    free(it);
  }
}

static void fail_list(session *s, item *list) {
  while (list) {
    item *next = list->next;
    fail_item(s, list, EIO);
    list = next;
  }
}

/* A snapshot of len bytes, copied from data unless data is NULL. */
static snapshot *snapshot_new(const void *data, size_t len) {
  snapshot *sn = malloc(sizeof *sn + len);
  if (!sn) return NULL;
  sn->written = 0;
  sn->uid = 0;
  sn->charged = 0;
  sn->len = len;
  if (data && len) memcpy(sn->data, data, len);
  return sn;
}

/* Snapshot budget. "Bytes held" by a user: the whole length of every
 * snapshot allocated for one of its opens, from the moment it is allocated
 * (a large one is allocated whole, then filled in pieces) until the handle is
 * released, the open fails, or the session ends. Open handles are memory the
 * daemon cannot reclaim while an unprivileged reader keeps them open. */

/* Under hmu: the entry of `uid`, or NULL. */
static struct budget_use *use_of(session *s, uint32_t uid) {
  for (uint32_t i = 0; i < s->nuses; i++)
    if (s->uses[i].uid == uid) return &s->uses[i];
  return NULL;
}

/* Whether `len` more bytes would take `uid` over its budget (len 0: whether it
 * has spent it): an open it makes now is refused before anything is rendered.
 * Counted. */
static int budget_spent(session *s, uint32_t uid, uint64_t len) {
  pthread_mutex_lock(&s->hmu);
  struct budget_use *u = s->budget ? use_of(s, uid) : NULL;
  uint64_t held = u ? u->bytes : 0;
  int spent = s->budget && (held >= s->budget || len > s->budget - held);
  pthread_mutex_unlock(&s->hmu);
  if (spent) stat_add(s, ST_OVER_BUDGET, 1);
  return spent;
}

/* Charges `sn` to `uid`: ENOMEM (no memory for the table) or EMFILE (over the
 * budget; counted), else 0. */
static int snapshot_charge(session *s, snapshot *sn, uint32_t uid) {
  if (sn->len == 0) return 0;   /* a write-only open's: nothing held */
  int err = 0;
  pthread_mutex_lock(&s->hmu);
  struct budget_use *u = use_of(s, uid);
  uint64_t held = u ? u->bytes : 0;
  if (s->budget && (sn->len > s->budget || held > s->budget - sn->len)) {
    err = EMFILE;
  } else if (!u) {
    if (s->nuses == s->capuses) {
      uint32_t cap = s->capuses ? s->capuses * 2 : 8;
      struct budget_use *nu = realloc(s->uses, cap * sizeof *nu);
      if (nu) { s->uses = nu; s->capuses = cap; }
    }
    if (s->nuses < s->capuses) {
      u = &s->uses[s->nuses++];
      u->uid = uid;
      u->bytes = 0;
    } else {
      err = ENOMEM;
    }
  }
  if (!err) {
    u->bytes += sn->len;
    sn->uid = uid;
    sn->charged = 1;
  }
  pthread_mutex_unlock(&s->hmu);
  if (err == EMFILE) stat_add(s, ST_OVER_BUDGET, 1);
  if (!err) stat_add(s, ST_SNAPSHOT_BYTES, sn->len);
  return err;
}

/* Frees a snapshot and gives its bytes back to its user's budget. */
static void snapshot_free(session *s, snapshot *sn) {
  if (sn->charged) {
    pthread_mutex_lock(&s->hmu);
    struct budget_use *u = use_of(s, sn->uid);
    if (u && (u->bytes -= sn->len) == 0) *u = s->uses[--s->nuses];
    pthread_mutex_unlock(&s->hmu);
    stat_sub(s, ST_SNAPSHOT_BYTES, sn->len);
  }
  free(sn);
}

/* Answer an open/opendir with a handle. -1 if the kernel no longer wants it
 * (the opener was interrupted): the caller frees it, since release will not come. */
static int reply_with_handle(session *s, fuse_req_t req, struct fuse_file_info *fi, hnode *list, hnode *h,
                             int gauge) {
  fi->fh = (uint64_t)(uintptr_t)h;
  list_add(s, list, h);
  stat_add(s, gauge, 1);
  if (fuse_reply_open(req, fi) == 0) return 0;
  list_del(s, h);
  stat_sub(s, gauge, 1);
  return -1;
}

/* Answer an open with the snapshot every read of it is served from, charged to
 * `uid` unless it already is (EMFILE beyond the budget). direct_io: reads go to
 * the snapshot whatever st_size says, so size 0 in attributes is fine and
 * nothing stale is served from the page cache. */
static void reply_snapshot(session *s, fuse_req_t req, struct fuse_file_info *fi, snapshot *sn, uint32_t uid) {
  int err = sn->charged ? 0 : snapshot_charge(s, sn, uid);
  if (err) {
    free(sn);
    reply_err(s, req, K_OPEN, err);
    return;
  }
  fi->direct_io = 1;
  fi->keep_cache = 0;
  if (reply_with_handle(s, req, fi, &s->files, &sn->link, ST_OPEN_FILES) != 0) snapshot_free(s, sn);
}

static void ms_to_ts(double ms, struct timespec *ts) {
  if (!isfinite(ms)) ms = 0;
  double sec = floor(ms / 1000.0);
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = (long)((ms - sec * 1000.0) * 1e6);
  if (ts->tv_nsec < 0) ts->tv_nsec = 0;
  if (ts->tv_nsec > 999999999) ts->tv_nsec = 999999999;
}

static void fill_stat(struct stat *st, uint64_t ino, uint32_t mode, uint64_t nlink, double size,
                      uint32_t uid, uint32_t gid, double mtime, double ctime, double atime) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = mode;
  st->st_nlink = nlink;
  st->st_size = size > 0 ? (off_t)size : 0;
  st->st_uid = uid;
  st->st_gid = gid;
  st->st_blksize = 4096;
  st->st_blocks = (st->st_size + 511) / 512;
  ms_to_ts(mtime, &st->st_mtim);
  ms_to_ts(ctime, &st->st_ctim);
  ms_to_ts(atime, &st->st_atim);
}

/* ------------------------------------------------------------------ */
/* Queue to JS                                                         */

static item *item_new(fuse_req_t req, int ev, int kind, fuse_ino_t ino, size_t extra) {
  item *it = calloc(1, sizeof *it + extra);
  if (!it) return NULL;
  it->req = req;
  it->ev = (uint8_t)ev;
  it->kind = (uint8_t)kind;
  it->ino = ino;
  it->len = extra;
  return it;
}

/* Returns -1 once unmount has started: the caller answers or drops the item.
 * `closing` is checked under the same mutex that unmount takes to drain the
 * queue, so nothing can slip in after the drain. */
static int enqueue(session *s, item *it) {
  pthread_mutex_lock(&s->qmu);
  if (s->closing) {
    pthread_mutex_unlock(&s->qmu);
    return -1;
  }
  it->next = NULL;
  if (s->qtail) s->qtail->next = it; else s->qhead = it;
  s->qtail = it;
  if (it->req) stat_add(s, ST_IN_FLIGHT, 1);
  pthread_mutex_unlock(&s->qmu);
  /* s->async outlives this call: it is closed only after the threads that
   * enqueue (the session thread) have been joined. */
  uv_async_send(s->async);
  return 0;
}

/* Session thread: hand a request to JS, or fail it if unmounting. */
static void to_js(fuse_req_t req, item *it, int kind) {
  session *s = fuse_req_userdata(req);
  if (!it) { reply_err(s, req, kind, ENOMEM); return; }
  if (enqueue(s, it) != 0) {
    reply_err(s, req, kind, EIO);
    free(it);
  }
}

/* ------------------------------------------------------------------ */
/* Stored values (see SlotArena in src/model/arena.ts)                 */
/*
 * JS registers the inode of a plain value (a u64/s64 word in the value
 * arena, no show(), no getter) once it has opened it, and drops every
 * registration whenever the tree changes in a way that could change what an
 * inode means. The session thread then answers a read-only open of such an
 * inode by itself: the text is formatted here, with no trip through the JS
 * thread. The arena is JS memory shared with this thread; JS writes a word
 * as two 32-bit stores between two increments of word 0 (a seqlock), so a
 * read that overlaps a write is detected, retried a few times, and handed
 * to JS if it keeps overlapping.
 */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Under vmu: the word at `slot`, unless every try overlapped a write. */
static int arena_read(const session *s, uint32_t slot, uint64_t *out) {
  const uint32_t *a = s->arena;
  for (int tries = 0; tries < 64; tries++) {
    uint32_t seq = __atomic_load_n(&a[0], __ATOMIC_ACQUIRE);
    if (!(seq & 1)) {
      uint32_t lo = __atomic_load_n(&a[2 * (size_t)slot], __ATOMIC_RELAXED);
      uint32_t hi = __atomic_load_n(&a[2 * (size_t)slot + 1], __ATOMIC_RELAXED);
      __atomic_thread_fence(__ATOMIC_ACQUIRE);
      if (__atomic_load_n(&a[0], __ATOMIC_RELAXED) == seq) {
        *out = (uint64_t)hi << 32 | lo;
        return 0;
      }
    }
    cpu_relax();
  }
  return -1;
}

/* Session thread: answers getattr of a registered value; 0 if it is not one.
 * `cat` needs this as much as open: every read through the kernel drops the
 * cached atime, so the fstat of the next cat always asks. */
static int getattr_stored(session *s, fuse_req_t req, fuse_ino_t ino) {
  struct stat st;
  double timeout = 0;
  int found = 0;
  pthread_mutex_lock(&s->vmu);
  stored *e = stored_find(&s->stored, ino);
  if (e) {
    const double *a = s->stored_attr;
    fill_stat(&st, ino, e->mode & ~STORED_SIGNED, (uint64_t)a[2], a[3], (uint32_t)a[4], (uint32_t)a[5], a[6], a[7], a[8]);
    timeout = s->stored_timeout;
    found = 1;
  }
  pthread_mutex_unlock(&s->vmu);
  if (found) fuse_reply_attr(req, &st, timeout);
  return found;
}

/* Session thread: answers a read-only open of a registered value; 0 if it
 * is not one (or a write kept overlapping): then JS answers it. */
static int open_stored(session *s, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, uint32_t uid) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return 0;
  char text[24];
  int n = 0;
  pthread_mutex_lock(&s->vmu);
  stored *e = stored_find(&s->stored, ino);
  uint64_t w;
  if (e && arena_read(s, e->slot, &w) == 0)
    n = (e->mode & STORED_SIGNED) ? snprintf(text, sizeof text, "%lld\n", (long long)w)
                     : snprintf(text, sizeof text, "%llu\n", (unsigned long long)w);
  pthread_mutex_unlock(&s->vmu);
  snapshot *sn = n > 0 ? snapshot_new(text, (size_t)n) : NULL;
  if (!sn) return 0;
  reply_snapshot(s, req, fi, sn, uid);
  return 1;
}

/* ------------------------------------------------------------------ */
/* Low-level operations (session thread)                               */

#define S(req) ((session *)fuse_req_userdata(req))

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  /* Always readdirplus (not "auto"), so `ls -l` gets attributes with the
   * listing instead of one lookup per entry. */
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  /* Atomic O_TRUNC: `echo 5 > f` arrives as open(O_TRUNC) + write("5\n")
   * rather than setattr(size=0) first, so a handler can refuse the write
   * without having already cleared the value. Explicit truncate(2) still
   * arrives as setattr. */
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  stat_add(S(req), ST_REQUESTS + K_LOOKUP, 1);
  size_t n = strlen(name);
  item *it = item_new(req, EV_LOOKUP, K_LOOKUP, parent, n + 1);
  if (it) memcpy(it->data, name, n + 1);
  to_js(req, it, K_LOOKUP);
}

static void queue_forgets(session *s, const struct fuse_forget_data *f, size_t count) {
  /* A forgotten inode is looked up anew before its next open, and registered again by JS. */
  pthread_mutex_lock(&s->vmu);
  for (size_t i = 0; s->stored.count && i < count; i++) stored_remove(&s->stored, f[i].ino);
  pthread_mutex_unlock(&s->vmu);
  if (!(s->flags & MF_FORGET)) return;
  item *it = item_new(NULL, EV_FORGET, K_FORGET, 0, count * 2 * sizeof(double));
  if (!it) return;
  double *pairs = (double *)it->data;
  for (size_t i = 0; i < count; i++) {
    pairs[2 * i] = (double)f[i].ino;
    pairs[2 * i + 1] = (double)f[i].nlookup;
  }
  it->u.count = count;
  if (enqueue(s, it) != 0) free(it);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  session *s = S(req);
  stat_add(s, ST_REQUESTS + K_FORGET, 1);
  struct fuse_forget_data f = { .ino = ino, .nlookup = nlookup };
  fuse_reply_none(req);
  queue_forgets(s, &f, 1);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  session *s = S(req);
  stat_add(s, ST_REQUESTS + K_FORGET, 1);
  queue_forgets(s, forgets, count);  /* before the reply: `forgets` lives in the request buffer */
  fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  stat_add(S(req), ST_REQUESTS + K_GETATTR, 1);
  if (getattr_stored(S(req), req, ino)) return;
  to_js(req, item_new(req, EV_GETATTR, K_GETATTR, ino, 0), K_GETATTR);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
  stat_add(S(req), ST_REQUESTS + K_SETATTR, 1);
  item *it = item_new(req, EV_SETATTR, K_SETATTR, ino, 0);
  if (it) {
    it->u.set.valid = to_set;
    it->u.set.size = (uint64_t)attr->st_size;
    it->u.set.mode = attr->st_mode;
    it->u.set.uid = attr->st_uid;
    it->u.set.gid = attr->st_gid;
  }
  to_js(req, it, K_SETATTR);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = S(req);
  stat_add(s, ST_REQUESTS + K_OPEN, 1);
  uint32_t uid = (uint32_t)fuse_req_ctx(req)->uid;
  /* a reader over its budget costs no rendering (writers get an empty snapshot) */
  if ((fi->flags & O_ACCMODE) != O_WRONLY && budget_spent(s, uid, 0)) {
    reply_err(s, req, K_OPEN, EMFILE);
    return;
  }
  if (open_stored(s, req, ino, fi, uid)) return;
  item *it = item_new(req, EV_OPEN, K_OPEN, ino, 0);
  if (it) { it->fi = *fi; it->u.flags = fi->flags; it->uid = uid; }
  to_js(req, it, K_OPEN);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  session *s = S(req);
  stat_add(s, ST_REQUESTS + K_READ, 1);
  snapshot *sn = (snapshot *)(uintptr_t)fi->fh;
  if (off < 0 || (size_t)off >= sn->len) {
    fuse_reply_buf(req, NULL, 0);       /* EOF */
    return;
  }
  size_t n = sn->len - (size_t)off;
  if (n > size) n = size;
  stat_add(s, ST_BYTES_READ, n);
  fuse_reply_buf(req, sn->data + off, n);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  stat_add(S(req), ST_REQUESTS + K_WRITE, 1);
  item *it = item_new(req, EV_WRITE, K_WRITE, ino, size);
  if (it) { memcpy(it->data, buf, size); it->u.off = off; it->fi = *fi; }
  to_js(req, it, K_WRITE);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  stat_add(S(req), ST_REQUESTS + K_FLUSH, 1);
  fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = S(req);
  stat_add(s, ST_REQUESTS + K_RELEASE, 1);
  snapshot *sn = (snapshot *)(uintptr_t)fi->fh;
  list_del(s, &sn->link);
  snapshot_free(s, sn);
  stat_sub(s, ST_OPEN_FILES, 1);
  fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  stat_add(S(req), ST_REQUESTS + K_OPENDIR, 1);
  item *it = item_new(req, EV_OPENDIR, K_OPENDIR, ino, 0);
  if (it) it->fi = *fi;
  to_js(req, it, K_OPENDIR);
}

/* Directory offsets: 0 is ".", 1 is "..", 2 + i is entry i. Each entry
 * carries the offset of the next one, so a listing resumes exactly where the
 * previous reply stopped whatever the kernel's buffer size. */
static void readdir_common(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, int plus) {
  session *s = S(req);
  stat_add(s, ST_REQUESTS + K_READDIR, 1);
  dirlist *d = (dirlist *)(uintptr_t)fi->fh;
  if (size > s->dirbuf_cap) {
    char *nb = realloc(s->dirbuf, size);
    if (!nb) { reply_err(s, req, K_READDIR, ENOMEM); return; }
    s->dirbuf = nb;
    s->dirbuf_cap = size;
  }
  char *buf = s->dirbuf;
  size_t used = 0;
  uint64_t end = (uint64_t)d->count + 2;
  for (uint64_t i = off < 0 ? 0 : (uint64_t)off; i < end; i++) {
    struct fuse_entry_param e;
    const char *name;
    memset(&e, 0, sizeof e);
    if (i < 2) {
      /* The kernel ignores the attributes of "." and ".." in readdirplus and
       * does not count them as lookups; ino 0 says "no entry attributes". */
      name = i == 0 ? "." : "..";
      e.attr.st_ino = i == 0 ? d->self : d->parent;
      e.attr.st_mode = S_IFDIR | 0755;
    } else {
      const dent *de = &d->ents[i - 2];
      name = d->names + de->name_off;
      fill_stat(&e.attr, de->ino, de->mode, S_ISDIR(de->mode) ? 2 : 1, de->size, d->uid, d->gid,
                de->mtime_ms, de->mtime_ms, de->mtime_ms);
      e.ino = de->ino;
      e.entry_timeout = d->entry_timeout;
      e.attr_timeout = d->attr_timeout;
    }
    size_t need = plus ? fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)(i + 1))
                       : fuse_add_direntry(req, buf + used, size - used, name, &e.attr, (off_t)(i + 1));
    if (need > size - used) break;   /* did not fit: not sent, so not counted as a lookup */
    used += need;
  }
  fuse_reply_buf(req, buf, used);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  readdir_common(req, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  readdir_common(req, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = S(req);
  stat_add(s, ST_REQUESTS + K_RELEASEDIR, 1);
  dirlist *d = (dirlist *)(uintptr_t)fi->fh;
  list_del(s, &d->link);
  free(d);
  stat_sub(s, ST_OPEN_DIRS, 1);
  fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  stat_add(S(req), ST_REQUESTS + K_STATFS, 1);
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

/* The tree belongs to the daemon: no namespace changes from outside. */
static void deny(fuse_req_t req) {
  stat_add(S(req), ST_REQUESTS + K_OTHER, 1);
  reply_err(S(req), req, K_OTHER, EPERM);
}

/* Extended attributes: ENOSYS makes the kernel answer EOPNOTSUPP (== ENOTSUP)
 * itself from then on, so `ls -l` does not cost one getxattr per entry. */
static void no_xattr(fuse_req_t req) {
  stat_add(S(req), ST_REQUESTS + K_OTHER, 1);
  reply_err(S(req), req, K_OTHER, ENOSYS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m) { deny(req); }
static void op_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t r) { deny(req); }
static void op_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi) { deny(req); }
static void op_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n) { deny(req); }
static void op_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char *n) { deny(req); }
static void op_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn,
                      unsigned int f) { deny(req); }
static void op_unlink(fuse_req_t req, fuse_ino_t p, const char *n) { deny(req); }
static void op_rmdir(fuse_req_t req, fuse_ino_t p, const char *n) { deny(req); }
static void op_getxattr(fuse_req_t req, fuse_ino_t i, const char *n, size_t sz) { no_xattr(req); }
static void op_listxattr(fuse_req_t req, fuse_ino_t i, size_t sz) { no_xattr(req); }
static void op_setxattr(fuse_req_t req, fuse_ino_t i, const char *n, const char *v, size_t sz, int f) { no_xattr(req); }
static void op_removexattr(fuse_req_t req, fuse_ino_t i, const char *n) { no_xattr(req); }

static const struct fuse_lowlevel_ops ops = {
  .init = op_init,
  .lookup = op_lookup,
  .forget = op_forget,
  .forget_multi = op_forget_multi,
  .getattr = op_getattr,
  .setattr = op_setattr,
  .open = op_open,
  .read = op_read,
  .write = op_write,
  .flush = op_flush,
  .release = op_release,
  .opendir = op_opendir,
  .readdir = op_readdir,
  .readdirplus = op_readdirplus,
  .releasedir = op_releasedir,
  .statfs = op_statfs,
  .mkdir = op_mkdir,
  .mknod = op_mknod,
  .create = op_create,
  .symlink = op_symlink,
  .link = op_link,
  .rename = op_rename,
  .unlink = op_unlink,
  .rmdir = op_rmdir,
  .getxattr = op_getxattr,
  .listxattr = op_listxattr,
  .setxattr = op_setxattr,
  .removexattr = op_removexattr,
};

/* ------------------------------------------------------------------ */
/* Threads                                                             */

/* Our own loop instead of fuse_session_loop: polling the (non-blocking)
 * /dev/fuse fd together with an eventfd lets unmount stop the thread before
 * the fd is closed, so no thread is ever left blocked in read(). */
static void *session_main(void *arg) {
  session *s = arg;
  struct fuse_buf fbuf = { .mem = NULL };
  struct pollfd pfd[2] = {
    { .fd = fuse_session_fd(s->se), .events = POLLIN },
    { .fd = s->wake_fd, .events = POLLIN },
  };
  int ended = 0;
  while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
    /* Read first, poll only when nothing is waiting: under load every request
     * is then one read(), not a poll() and a read(). */
    int res = fuse_session_receive_buf(s->se, &fbuf);
    if (res == -EAGAIN) {
      if (poll(pfd, 2, -1) < 0) {
        if (errno == EINTR) continue;
        ended = 1;
        break;
      }
      if (pfd[1].revents) break;                /* unmount asked us to stop */
      continue;
    }
    if (res == -EINTR) continue;
    if (res <= 0) { ended = 1; break; }          /* ENODEV: unmounted or aborted */
    fuse_session_process_buf(s->se, &fbuf);
  }
  free(fbuf.mem);
  if (ended) {
    item *it = item_new(NULL, EV_ENDED, K_OTHER, 0, 0);
    if (it && enqueue(s, it) != 0) free(it);
  }
  return NULL;
}

static void *notifier_main(void *arg) {
  session *s = arg;
  pthread_mutex_lock(&s->nmu);
  for (;;) {
    while (!s->nhead && !s->nstop) pthread_cond_wait(&s->ncv, &s->nmu);
    if (s->nstop) break;
    notif *n = s->nhead;
    s->nhead = n->next;
    if (!s->nhead) s->ntail = NULL;
    pthread_mutex_unlock(&s->nmu);
    /* Errors (ENOENT: nothing cached) are expected and ignored. */
    if (n->mark > 0) {
      item *it = item_new(NULL, EV_SENT, K_OTHER, 0, 0);
      if (it) {
        it->u.mark = n->mark;
        if (enqueue(s, it) != 0) free(it);
      }
    } else if (n->namelen) {
      fuse_lowlevel_notify_inval_entry(s->se, n->ino, n->name, n->namelen);
    } else {
      fuse_lowlevel_notify_inval_inode(s->se, n->ino, 0, 0);
    }
    free(n);
    pthread_mutex_lock(&s->nmu);
  }
  pthread_mutex_unlock(&s->nmu);
  return NULL;
}

/* Our threads take no signals: Node's handlers belong on Node's threads. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(t, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

/* ------------------------------------------------------------------ */
/* JS thread: slots, dispatch, shutdown                                */

static int slot_put(session *s, item *it, double *id) {
  uint32_t idx;
  if (s->nfree) {
    idx = s->freelist[--s->nfree];
  } else {
    if (s->nslots == s->cap) {
      uint32_t cap = s->cap ? s->cap * 2 : 256;
      if (cap > SLOT_SPAN) return -1;
      item **sl = realloc(s->slots, cap * sizeof *sl);
      if (sl) s->slots = sl;
      uint32_t *g = realloc(s->gens, cap * sizeof *g);
      if (g) s->gens = g;
      uint32_t *fl = realloc(s->freelist, cap * sizeof *fl);
      if (fl) s->freelist = fl;
      if (!sl || !g || !fl) return -1;
      s->cap = cap;
    }
    idx = s->nslots++;
    s->gens[idx] = 0;
  }
  s->slots[idx] = it;
  *id = (double)s->gens[idx] * (double)SLOT_SPAN + idx;
  return 0;
}

static item *slot_take(session *s, double id) {
  if (!(id >= 0 && id < 4503599627370496.0)) return NULL;
  uint64_t v = (uint64_t)id;
  uint32_t idx = (uint32_t)(v % SLOT_SPAN), gen = (uint32_t)(v / SLOT_SPAN);
  if (idx >= s->nslots || !s->slots[idx] || s->gens[idx] != gen) return NULL;
  item *it = s->slots[idx];
  s->slots[idx] = NULL;
  s->gens[idx] = (s->gens[idx] + 1) & GEN_MASK;
  s->freelist[s->nfree++] = idx;
  return it;
}

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static void dispatch_item(session *s, napi_value fn, item *it) {
  napi_env env = s->env;
  napi_value argv[8], undef, r;
  size_t argc = 3;
  double id = 0;
  /* A request may be answered, hence freed, inside the call: remember. */
  const int needs_reply = it->req != NULL;
  if (needs_reply && slot_put(s, it, &id) != 0) { fail_item(s, it, ENOMEM); return; }
  napi_get_undefined(env, &undef);
  argv[0] = num(env, it->ev);
  argv[1] = num(env, id);
  argv[2] = num(env, (double)it->ino);
  switch (it->ev) {
  case EV_LOOKUP:
    napi_create_string_utf8(env, it->data, NAPI_AUTO_LENGTH, &argv[3]);
    argc = 4;
    break;
  case EV_OPEN:
    argv[3] = num(env, it->u.flags);
    argv[4] = num(env, it->uid);
    argc = 5;
    break;
  case EV_SETATTR:
    argv[3] = num(env, it->u.set.valid);
    argv[4] = num(env, (double)it->u.set.size);
    argv[5] = num(env, it->u.set.mode);
    argv[6] = num(env, it->u.set.uid);
    argv[7] = num(env, it->u.set.gid);
    argc = 8;
    break;
  case EV_WRITE:
    napi_create_buffer_copy(env, it->len, it->data, NULL, &argv[3]);
    argv[4] = num(env, (double)it->u.off);
    /* the handle cannot be released while one of its writes is unanswered */
    argv[5] = num(env, (double)((snapshot *)(uintptr_t)it->fi.fh)->written);
    argc = 6;
    break;
  case EV_FORGET: {
    void *mem;
    napi_value ab;
    napi_create_arraybuffer(env, it->len, &mem, &ab);
    memcpy(mem, it->data, it->len);
    napi_create_typedarray(env, napi_float64_array, it->u.count * 2, ab, 0, &argv[2]);
    break;
  }
  case EV_LOG:
    argv[2] = num(env, it->u.level);
    napi_create_string_utf8(env, it->data, it->len, &argv[3]);
    argc = 4;
    break;
  case EV_SENT:
    argv[2] = num(env, it->u.mark);
    break;
  case EV_GETATTR:
  case EV_OPENDIR:
    break;
  default:
    argc = 2;                   /* EV_ENDED */
  }
  if (napi_call_function(env, undef, fn, argc, argv, &r) != napi_ok) {
    /* The wrapper catches everything; if something still escapes, do not let
     * it become an uncaught exception, and do not leave the request open. */
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    if (needs_reply) {
      item *held = slot_take(s, id);
      if (held) fail_item(s, held, EIO);
    }
  }
  if (!needs_reply) free(it);
}

static void on_async(uv_async_t *h) {
  session *s = h->data;
  pthread_mutex_lock(&s->qmu);
  s->batch = s->qhead;
  s->qhead = s->qtail = NULL;
  pthread_mutex_unlock(&s->qmu);
  if (!s->batch) return;

  napi_env env = s->env;
  napi_handle_scope hs;
  napi_callback_scope cs;
  napi_value resource, fn;
  napi_open_handle_scope(env, &hs);
  napi_create_object(env, &resource);
  /* A callback scope so that promise jobs and nextTicks scheduled by the
   * handlers run when the batch ends, as after any libuv callback. */
  napi_open_callback_scope(env, resource, s->actx, &cs);
  napi_get_reference_value(env, s->dispatch, &fn);
  /* The batch lives in the session, not in a local, so that an unmount
   * started by a handler fails the rest of it before the session goes. */
  while (s->batch) {
    item *it = s->batch;
    s->batch = it->next;
    napi_handle_scope is;
    napi_open_handle_scope(env, &is);
    dispatch_item(s, fn, it);
    napi_close_handle_scope(env, is);
  }
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
}

static void free_handles(session *s, hnode *head, int gauge) {
  hnode *n = head->next;
  list_init(head);
  while (n != head) {
    hnode *next = n->next;
    /* hnode is the first member of snapshot and dirlist */
    if (gauge == ST_OPEN_FILES) snapshot_free(s, (snapshot *)n);
    else free(n);
    stat_sub(s, gauge, 1);
    n = next;
  }
}

static void on_async_closed(uv_handle_t *h) { free(h); }

static void cleanup_hook(void *arg);

/* Unmount. Order matters:
 *  1. refuse new JS work and fail everything queued to or held by JS, while
 *     the session thread still runs (it answers new requests with EIO);
 *  2. stop the notifier: any lookup it might wait on can now be answered;
 *  3. stop and join the session thread;
 *  4. only then close the fd / unmount and destroy the session, so no
 *     thread can touch the session or a reused fd number afterwards. */
static void shutdown_session(session *s) {
  if (s->state == S_CLOSED) return;
  s->state = S_CLOSED;

  pthread_mutex_lock(&s->qmu);
  s->closing = 1;
  item *queued = s->qhead;
  s->qhead = s->qtail = NULL;
  pthread_mutex_unlock(&s->qmu);
  fail_list(s, queued);
  fail_list(s, s->batch);
  s->batch = NULL;
  for (uint32_t i = 0; i < s->nslots; i++) {
    if (s->slots[i]) fail_item(s, s->slots[i], EIO);
  }
  free(s->slots); free(s->gens); free(s->freelist);
  s->slots = NULL; s->gens = s->freelist = NULL;
  s->nslots = s->cap = s->nfree = 0;

  pthread_mutex_lock(&s->nmu);
  s->nstop = 1;
  while (s->nhead) { notif *n = s->nhead; s->nhead = n->next; free(n); }
  s->ntail = NULL;
  pthread_cond_signal(&s->ncv);
  pthread_mutex_unlock(&s->nmu);
  pthread_join(s->notify_thread, NULL);

  __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
  uint64_t one = 1;
  if (write(s->wake_fd, &one, sizeof one) < 0) { /* eventfd write cannot fail here */ }
  pthread_join(s->loop_thread, NULL);

  pthread_mutex_lock(&g_log_mu);
  if (g_debug_session == s) g_debug_session = NULL;
  pthread_mutex_unlock(&g_log_mu);

  fuse_session_unmount(s->se);
  fuse_session_destroy(s->se);
  s->se = NULL;
  close(s->wake_fd);

  /* Handles the kernel never released (the connection is gone now). */
  free_handles(s, &s->files, ST_OPEN_FILES);
  free_handles(s, &s->dirs, ST_OPEN_DIRS);
  free(s->dirbuf);
  s->dirbuf = NULL;
  s->dirbuf_cap = 0;

  s->arena = NULL;
  stored_clear(&s->stored);
  if (s->arena_ref) napi_delete_reference(s->env, s->arena_ref);
  s->arena_ref = NULL;

  uv_close((uv_handle_t *)s->async, on_async_closed);
  s->async = NULL;
  napi_delete_reference(s->env, s->dispatch);
  s->dispatch = NULL;
  napi_async_destroy(s->env, s->actx);
  if (!s->in_cleanup_hook) napi_remove_env_cleanup_hook(s->env, cleanup_hook, s);
}

/* The process is exiting while mounted: unmount rather than leave a stale mount. */
static void cleanup_hook(void *arg) {
  session *s = arg;
  s->in_cleanup_hook = 1;
  shutdown_session(s);
}

static void session_free(session *s) {
  pthread_mutex_destroy(&s->qmu);
  pthread_mutex_destroy(&s->nmu);
  pthread_cond_destroy(&s->ncv);
  pthread_mutex_destroy(&s->hmu);
  pthread_mutex_destroy(&s->vmu);
  stored_clear(&s->stored);
  free(s->uses);
  free(s->mountpoint);
  free(s);
}

static void finalize_session(napi_env env, void *data, void *hint) {
  session *s = data;
  shutdown_session(s);   /* no-op unless the handle was dropped while mounted */
  session_free(s);
}

/* ------------------------------------------------------------------ */
/* N-API helpers                                                       */

static napi_value throw_code(napi_env env, const char *code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  napi_value c, m, err;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, c, m, &err);
  napi_throw(env, err);
  return NULL;
}

static const char *errno_code(int e) {
  const char *n = e ? strerrorname_np(e) : NULL;
  return n ? n : "EIO";
}

static char *get_string(napi_env env, napi_value v, size_t *len_out) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *buf = malloc(len + 1);
  if (!buf) return NULL;
  napi_get_value_string_utf8(env, v, buf, len + 1, &len);
  if (len_out) *len_out = len;
  return buf;
}

static double get_num(napi_env env, napi_value v, double dflt) {
  double d;
  return napi_get_value_double(env, v, &d) == napi_ok ? d : dflt;
}

/* Typed array data of the expected type, or NULL (also for null/undefined).
 * An empty array may have no data pointer at all: it still is an array (an
 * empty directory's columns), so it gets a non-NULL pointer to nothing. */
static void *get_typed(napi_env env, napi_value v, napi_typedarray_type want, size_t *len) {
  static uint64_t empty;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return NULL;
  napi_typedarray_type t;
  void *data;
  if (napi_get_typedarray_info(env, v, &t, len, &data, NULL, NULL) != napi_ok || t != want) return NULL;
  return data != NULL || *len != 0 ? data : &empty;
}

#define ARGS(n)                                                                \
  size_t argc = (n);                                                           \
  napi_value argv[(n) > 0 ? (n) : 1];                                          \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);                        \
  for (size_t i_ = argc; i_ < (n); i_++) napi_get_undefined(env, &argv[i_]);

static session *get_session(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    throw_code(env, "EINVAL", "not a statsfs fuse session handle");
    return NULL;
  }
  return p;
}

static napi_value js_bool(napi_env env, bool b) {
  napi_value r;
  napi_get_boolean(env, b, &r);
  return r;
}

/* Take the request `id` for a reply; NULL if it was already answered (late,
 * duplicate or after unmount). A reply of the wrong kind answers EIO. */
static item *take_reply(napi_env env, session *s, napi_value idv, int ev1, int ev2) {
  item *it = slot_take(s, get_num(env, idv, -1));
  if (it && it->ev != ev1 && it->ev != ev2) {
    fail_item(s, it, EIO);
    throw_code(env, "EINVAL", "reply does not match the request type");
    return NULL;
  }
  return it;
}

/* attr: Float64Array [ino, mode, nlink, size, uid, gid, mtimeMs, ctimeMs, atimeMs] */
static int get_attr(napi_env env, napi_value v, struct stat *st) {
  size_t len;
  double *a = get_typed(env, v, napi_float64_array, &len);
  if (!a || len < 9) return -1;
  fill_stat(st, (uint64_t)a[0], (uint32_t)a[1], (uint64_t)a[2], a[3], (uint32_t)a[4], (uint32_t)a[5],
            a[6], a[7], a[8]);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Exported functions                                                  */

/* fusermount3, which libfuse runs to mount for a user who is not root, says why it refused only on its
 * stderr. Node's fd 2 is close-on-exec, so that line never reached anyone and the caller read "unknown
 * error". For the length of the mount call fd 2 is a pipe (inherited by fusermount3), read afterwards:
 * a failure reports it, and what a success printed is passed on to the real stderr. */
typedef struct {
  int saved;        /* the real fd 2, or -1 when nothing is captured */
  int saved_flags;
  int rd;
} stderr_capture;

static void capture_stderr(stderr_capture *c) {
  int p[2];
  c->saved = -1;
  c->rd = -1;
  if (pipe2(p, O_CLOEXEC) != 0) return;
  c->saved_flags = fcntl(2, F_GETFD);
  c->saved = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (c->saved < 0 || dup2(p[1], 2) < 0) {   /* dup2 leaves fd 2 inheritable */
    if (c->saved >= 0) close(c->saved);
    c->saved = -1;
    close(p[0]);
    close(p[1]);
    return;
  }
  close(p[1]);
  c->rd = p[0];
  fcntl(c->rd, F_SETFL, O_NONBLOCK);
}

/* Restores fd 2; returns what was written meanwhile as one line ("; " between lines), empty if nothing. */
static void release_stderr(stderr_capture *c, char *out, size_t cap) {
  size_t n = 0;
  out[0] = 0;
  if (c->saved < 0) return;
  dup2(c->saved, 2);                         /* closes our write end: reads below end at EOF */
  if (c->saved_flags >= 0) fcntl(2, F_SETFD, c->saved_flags);
  close(c->saved);
  char chunk[512];
  ssize_t r;
  while ((r = read(c->rd, chunk, sizeof chunk)) > 0) {
    for (ssize_t i = 0; i < r && n + 3 < cap; i++) {
      char ch = chunk[i];
      if (ch == '\n') {
        if (n > 0 && out[n - 1] != ' ') { out[n++] = ';'; out[n++] = ' '; }
      } else if (ch != '\r') out[n++] = ch;
    }
  }
  close(c->rd);
  while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == ';')) n--;
  out[n] = 0;
}

/* mount(mountpoint, options: string, dispatch: Function, flags) -> handle */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  ARGS(4);
  size_t len;
  char *mnt = get_string(env, argv[0], &len);
  char *opts = get_string(env, argv[1], &len);
  int flags = (int)get_num(env, argv[3], 0);
  napi_valuetype fnt;
  napi_typeof(env, argv[2], &fnt);
  session *s = NULL;
  napi_value result = NULL;

  if (!mnt || !opts || fnt != napi_function) {
    throw_code(env, "EINVAL", "mount(mountpoint: string, options: string, dispatch: function, flags)");
    goto out;
  }
  /* Pre-checks give precise codes; libfuse reports most of these as text. */
  struct stat st;
  if (stat(mnt, &st) != 0) {
    int e = errno;
    if (e == ENOTCONN)
      throw_code(env, "ENOTCONN", "mountpoint %s is a stale FUSE mount (%s); detach it with lazyUnmount()",
                 mnt, strerror(e));
    else
      throw_code(env, errno_code(e), "cannot mount on %s: %s", mnt, strerror(e));
    goto out;
  }
  if (!S_ISDIR(st.st_mode)) {
    throw_code(env, "ENOTDIR", "cannot mount on %s: not a directory", mnt);
    goto out;
  }
  int probe = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (probe < 0) {
    /* Present but not ours to open: libfuse would fail the same way (it opens it as the caller). */
    int e = errno;
    if (e == EACCES || e == EPERM)
      throw_code(env, "EACCES", "cannot open /dev/fuse: %s", strerror(e));
    else
      throw_code(env, "ENOFUSE", "FUSE is unusable: cannot open /dev/fuse: %s", strerror(e));
    goto out;
  }
  close(probe);

  s = calloc(1, sizeof *s);
  if (!s) { throw_code(env, "ENOMEM", "out of memory"); goto out; }
  s->env = env;
  s->flags = flags;
  s->wake_fd = -1;
  pthread_mutex_init(&s->qmu, NULL);
  pthread_mutex_init(&s->nmu, NULL);
  pthread_cond_init(&s->ncv, NULL);
  pthread_mutex_init(&s->hmu, NULL);
  pthread_mutex_init(&s->vmu, NULL);
  list_init(&s->files);
  list_init(&s->dirs);

  char *fargv[] = { "statsfs", "-o", opts, NULL };
  struct fuse_args args = FUSE_ARGS_INIT(opts[0] ? 3 : 1, fargv);
  log_reset();
  s->se = fuse_session_new(&args, &ops, sizeof ops, s);
  fuse_opt_free_args(&args);
  if (!s->se) {
    throw_code(env, "EINVAL", "fuse_session_new failed for options \"%s\": %s", opts,
               g_last_log[0] ? g_last_log : "unknown error");
    goto fail;
  }
  stderr_capture cap;
  char said[512];
  capture_stderr(&cap);
  int mounted = fuse_session_mount(s->se, mnt);
  release_stderr(&cap, said, sizeof said);
  if (mounted != 0) {
    const char *code = errno_code(g_last_errno ? g_last_errno : EIO);
    if (said[0]) {
      /* fusermount3 refused: allow_other without user_allow_other, a mountpoint the user cannot write */
      code = strstr(said, "allow_other") || strstr(said, "access") || strstr(said, "permitted") ? "EPERM" : "EIO";
    } else if (strstr(g_last_log, "fusermount") || strstr(g_last_log, "/dev/fuse")) {
      code = "ENOFUSE";
    }
    throw_code(env, code, "mount on %s failed: %s", mnt, said[0] ? said : g_last_log[0] ? g_last_log : "unknown error");
    goto fail;
  }
  if (said[0]) fprintf(stderr, "%s\n", said);
  int fd = fuse_session_fd(s->se);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  uv_loop_t *loop = NULL;
  napi_get_uv_event_loop(env, &loop);
  s->async = calloc(1, sizeof *s->async);
  napi_value name;
  napi_create_string_utf8(env, "statsfs:fuse", NAPI_AUTO_LENGTH, &name);
  if (s->wake_fd < 0 || !loop || !s->async || uv_async_init(loop, s->async, on_async) != 0 ||
      napi_async_init(env, NULL, name, &s->actx) != napi_ok) {
    throw_code(env, "EIO", "cannot set up the session event plumbing");
    fuse_session_unmount(s->se);
    if (s->async && s->async->loop) { uv_close((uv_handle_t *)s->async, on_async_closed); s->async = NULL; }
    goto fail;
  }
  s->async->data = s;
  napi_create_reference(env, argv[2], 1, &s->dispatch);
  s->mountpoint = mnt;
  mnt = NULL;

  if (flags & MF_DEBUG) {
    pthread_mutex_lock(&g_log_mu);
    g_debug_session = s;
    pthread_mutex_unlock(&g_log_mu);
  }
  start_thread(&s->notify_thread, notifier_main, s);
  start_thread(&s->loop_thread, session_main, s);
  s->state = S_MOUNTED;
  napi_add_env_cleanup_hook(env, cleanup_hook, s);
  napi_create_external(env, s, finalize_session, NULL, &result);
  goto out;

fail:
  if (s->se) fuse_session_destroy(s->se);
  if (s->wake_fd >= 0) close(s->wake_fd);
  free(s->async);
  s->mountpoint = NULL;
  session_free(s);
out:
  free(mnt);
  free(opts);
  return result;
}

static napi_value js_unmount(napi_env env, napi_callback_info info) {
  ARGS(1);
  session *s = get_session(env, argv[0]);
  if (s) shutdown_session(s);
  return NULL;
}

static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  ARGS(3);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  item *it = slot_take(s, get_num(env, argv[1], -1));
  if (!it) return js_bool(env, false);
  int e = (int)get_num(env, argv[2], EIO);
  fail_item(s, it, e > 0 && e < 4096 ? e : EIO);
  return js_bool(env, true);
}

/* replyEntry(h, id, attr, entryTimeout, attrTimeout) */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  ARGS(5);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  item *it = take_reply(env, s, argv[1], EV_LOOKUP, EV_LOOKUP);
  if (!it) return js_bool(env, false);
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  if (get_attr(env, argv[2], &e.attr) != 0) {
    fail_item(s, it, EIO);
    return throw_code(env, "EINVAL", "replyEntry: attr must be a Float64Array(9)");
  }
  e.ino = e.attr.st_ino;
  e.entry_timeout = get_num(env, argv[3], 0);
  e.attr_timeout = get_num(env, argv[4], 0);
  fuse_reply_entry(it->req, &e);
  finish(s, it);
  return js_bool(env, true);
}

/* replyAttr(h, id, attr, attrTimeout) for getattr and setattr */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  ARGS(4);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  item *it = take_reply(env, s, argv[1], EV_GETATTR, EV_SETATTR);
  if (!it) return js_bool(env, false);
  struct stat st;
  if (get_attr(env, argv[2], &st) != 0) {
    fail_item(s, it, EIO);
    return throw_code(env, "EINVAL", "replyAttr: attr must be a Float64Array(9)");
  }
  fuse_reply_attr(it->req, &st, get_num(env, argv[3], 0));
  finish(s, it);
  return js_bool(env, true);
}


/* A large snapshot is filled in pieces, between turns of the event loop, before
 * the open is answered: copying hundreds of megabytes at once would hold the
 * JS thread. It belongs to the request until replyOpen hands it over, so it is
 * freed (and its bytes given back to the budget) however the request ends. */

/* The request `id` if it is still waiting for its open reply, without taking it. */
static item *peek_open(napi_env env, session *s, napi_value idv) {
  double id = get_num(env, idv, -1);
  if (!(id >= 0 && id < 4503599627370496.0)) return NULL;
  uint64_t v = (uint64_t)id;
  uint32_t idx = (uint32_t)(v % SLOT_SPAN), gen = (uint32_t)(v / SLOT_SPAN);
  if (idx >= s->nslots || !s->slots[idx] || s->gens[idx] != gen) return NULL;
  item *it = s->slots[idx];
  return it->ev == EV_OPEN ? it : NULL;
}

/* allocSnapshot(h, id, len) -> the request waits for fillSnapshot and replyOpen(h, id, null);
 * false: the request was answered, EMFILE (over the caller's budget) or ENOMEM. */
static napi_value js_alloc_snapshot(napi_env env, napi_callback_info info) {
  ARGS(3);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  double len = get_num(env, argv[2], -1);
  if (!(len >= 0 && len <= (double)SIZE_MAX / 2)) return throw_code(env, "EINVAL", "allocSnapshot: bad length");
  item *it = peek_open(env, s, argv[1]);
  if (!it) return js_bool(env, false);
  if (it->sn) return throw_code(env, "EINVAL", "allocSnapshot: this open already has a snapshot");
  snapshot *sn = snapshot_new(NULL, (size_t)len);
  int err = sn ? snapshot_charge(s, sn, it->uid) : ENOMEM;
  if (err) {
    free(sn);
    fail_item(s, slot_take(s, get_num(env, argv[1], -1)), err);
    return js_bool(env, false);
  }
  it->sn = sn;
  return js_bool(env, true);
}

/* fillSnapshot(h, id, offset, chunk: Buffer) -> false once the request is gone (unmount) */
static napi_value js_fill_snapshot(napi_env env, napi_callback_info info) {
  ARGS(4);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  double off = get_num(env, argv[2], -1);
  void *data = NULL;
  size_t len = 0;
  bool isbuf = false;
  napi_is_buffer(env, argv[3], &isbuf);
  if (!isbuf || napi_get_buffer_info(env, argv[3], &data, &len) != napi_ok)
    return throw_code(env, "EINVAL", "fillSnapshot: expected a Buffer");
  item *it = peek_open(env, s, argv[1]);
  if (!it || !it->sn) return js_bool(env, false);
  snapshot *sn = it->sn;
  if (!(off >= 0) || (size_t)off > sn->len || len > sn->len - (size_t)off)
    return throw_code(env, "EINVAL", "fillSnapshot: chunk out of bounds");
  if (len) memcpy(sn->data + (size_t)off, data, len);
  return js_bool(env, true);
}

/* replyOpen(h, id, snapshot: Buffer | null: the one allocSnapshot made) */
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  ARGS(3);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  item *it = take_reply(env, s, argv[1], EV_OPEN, EV_OPEN);
  if (!it) return js_bool(env, false);
  snapshot *sn = it->sn;
  it->sn = NULL;
  if (!sn) {
    void *data = NULL;
    size_t len = 0;
    bool isbuf = false;
    napi_is_buffer(env, argv[2], &isbuf);
    if (!isbuf || napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) {
      fail_item(s, it, EIO);
      return throw_code(env, "EINVAL", "replyOpen: snapshot must be a Buffer, or null after allocSnapshot");
    }
    sn = snapshot_new(data, len);
    if (!sn) { fail_item(s, it, ENOMEM); return js_bool(env, true); }
  }
  reply_snapshot(s, it->req, &it->fi, sn, it->uid);
  finish(s, it);
  return js_bool(env, true);
}

/* budgetSpent(h, uid, bytes) -> whether `bytes` more would take uid over its
 * budget; counted as a refusal when true (the caller answers EMFILE). */
static napi_value js_budget_spent(napi_env env, napi_callback_info info) {
  ARGS(3);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  double uid = get_num(env, argv[1], -1), bytes = get_num(env, argv[2], 0);
  if (!(uid >= 0 && uid <= UINT32_MAX) || !(bytes >= 0))
    return throw_code(env, "EINVAL", "budgetSpent(h, uid, bytes)");
  return js_bool(env, budget_spent(s, (uint32_t)uid, bytes < 18446744073709551616.0 ? (uint64_t)bytes : UINT64_MAX));
}

/* setSnapshotBudget(h, bytes): what one uid may hold in snapshots (0: no limit). */
static napi_value js_set_snapshot_budget(napi_env env, napi_callback_info info) {
  ARGS(2);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  double bytes = get_num(env, argv[1], -1);
  if (!(bytes >= 0 && bytes < 18446744073709551616.0))
    return throw_code(env, "EINVAL", "setSnapshotBudget: bytes must be 0 or more");
  pthread_mutex_lock(&s->hmu);
  s->budget = (uint64_t)bytes;
  pthread_mutex_unlock(&s->hmu);
  return NULL;
}

/* replyOpendir(h, id, names: string ('\0'-joined), inos: Float64Array, modes: Uint32Array,
 *              sizes: Float64Array|null, mtimesMs: Float64Array|null,
 *              meta: Float64Array [self, parent, uid, gid, entryTimeout, attrTimeout]) */
static napi_value js_reply_opendir(napi_env env, napi_callback_info info) {
  ARGS(8);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  item *it = take_reply(env, s, argv[1], EV_OPENDIR, EV_OPENDIR);
  if (!it) return js_bool(env, false);

  size_t n_ino = 0, n_mode = 0, n_size = 0, n_mtime = 0, n_meta = 0, names_len = 0;
  double *inos = get_typed(env, argv[3], napi_float64_array, &n_ino);
  uint32_t *modes = get_typed(env, argv[4], napi_uint32_array, &n_mode);
  double *sizes = get_typed(env, argv[5], napi_float64_array, &n_size);
  double *mtimes = get_typed(env, argv[6], napi_float64_array, &n_mtime);
  double *meta = get_typed(env, argv[7], napi_float64_array, &n_meta);
  const char *bad = NULL;
  if (napi_get_value_string_utf8(env, argv[2], NULL, 0, &names_len) != napi_ok) bad = "names must be a string";
  else if (!inos || !modes || !meta || n_meta < 6) bad = "inos, modes and meta must be typed arrays";
  else if (n_mode != n_ino || (sizes && n_size != n_ino) || (mtimes && n_mtime != n_ino))
    bad = "inos, modes, sizes and mtimesMs must have the same length";
  else if (n_ino >= UINT32_MAX / 2 || names_len >= UINT32_MAX) bad = "directory too large";
  if (bad) {
    fail_item(s, it, EIO);
    return throw_code(env, "EINVAL", "replyOpendir: %s", bad);
  }

  /* One block: header, entries, then the names with their separators
   * turned into terminators. */
  size_t count = n_ino;
  dirlist *d = malloc(sizeof *d + count * sizeof(dent) + names_len + 1);
  if (!d) { fail_item(s, it, ENOMEM); return js_bool(env, true); }
  d->ents = (dent *)(d + 1);
  d->names = (char *)(d->ents + count);
  napi_get_value_string_utf8(env, argv[2], d->names, names_len + 1, &names_len);
  uint32_t off = 0;
  size_t i;
  for (i = 0; i < count && off <= names_len; i++) {
    dent *de = &d->ents[i];
    de->ino = (uint64_t)inos[i];
    de->mode = modes[i];
    de->size = sizes ? sizes[i] : 0;
    de->mtime_ms = mtimes ? mtimes[i] : 0;
    de->name_off = off;
    off += (uint32_t)strlen(d->names + off) + 1;   /* the final name ends at the string's NUL */
  }
  if (i != count || (count > 0 && off != names_len + 1) || (count == 0 && names_len != 0)) {
    free(d);
    fail_item(s, it, EIO);
    return throw_code(env, "EINVAL", "replyOpendir: the number of names does not match inos.length");
  }
  d->count = (uint32_t)count;
  d->self = (fuse_ino_t)meta[0];
  d->parent = (fuse_ino_t)meta[1];
  d->uid = (uint32_t)meta[2];
  d->gid = (uint32_t)meta[3];
  d->entry_timeout = meta[4];
  d->attr_timeout = meta[5];
  if (reply_with_handle(s, it->req, &it->fi, &s->dirs, &d->link, ST_OPEN_DIRS) != 0) free(d);
  finish(s, it);
  return js_bool(env, true);
}

/* replyWrite(h, id, written) */
static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  ARGS(3);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  item *it = take_reply(env, s, argv[1], EV_WRITE, EV_WRITE);
  if (!it) return js_bool(env, false);
  double n = get_num(env, argv[2], -1);
  if (!(n >= 0 && n <= (double)it->len)) {
    fail_item(s, it, EIO);
    return throw_code(env, "EINVAL", "replyWrite: written must be between 0 and the data length");
  }
  ((snapshot *)(uintptr_t)it->fi.fh)->written += (uint64_t)n;
  fuse_reply_write(it->req, (size_t)n);
  finish(s, it);
  return js_bool(env, true);
}

static napi_value queue_notif(napi_env env, session *s, fuse_ino_t ino, const char *name, size_t namelen,
                              double mark) {
  notif *n = malloc(sizeof *n + namelen + 1);
  if (!n) return throw_code(env, "ENOMEM", "out of memory");
  n->next = NULL;
  n->ino = ino;
  n->mark = mark;
  n->namelen = namelen;
  if (namelen) memcpy(n->name, name, namelen + 1);
  bool queued = false;
  pthread_mutex_lock(&s->nmu);
  if (!s->nstop && s->state == S_MOUNTED) {
    if (s->ntail) s->ntail->next = n; else s->nhead = n;
    s->ntail = n;
    pthread_cond_signal(&s->ncv);
    queued = true;
  }
  pthread_mutex_unlock(&s->nmu);
  if (!queued) free(n);
  return js_bool(env, queued);
}

/* invalidateEntry(h, parent, name) -> queued */
static napi_value js_invalidate_entry(napi_env env, napi_callback_info info) {
  ARGS(3);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  size_t len = 0;
  char *name = get_string(env, argv[2], &len);
  if (!name || len == 0) {
    free(name);
    return throw_code(env, "EINVAL", "invalidateEntry: name must be a non-empty string");
  }
  napi_value r = queue_notif(env, s, (fuse_ino_t)get_num(env, argv[1], 0), name, len, 0);
  free(name);
  return r;
}

/* invalidateInode(h, ino) -> queued */
static napi_value js_invalidate_inode(napi_env env, napi_callback_info info) {
  ARGS(2);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  return queue_notif(env, s, (fuse_ino_t)get_num(env, argv[1], 0), NULL, 0, 0);
}

/* markSent(h, mark) -> queued: once every invalidation queued before it has been
 * sent to the kernel, EV_SENT(mark) is dispatched. */
static napi_value js_mark_sent(napi_env env, napi_callback_info info) {
  ARGS(2);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  double mark = get_num(env, argv[1], 0);
  if (!(mark > 0)) return throw_code(env, "EINVAL", "markSent: mark must be a positive number");
  return queue_notif(env, s, 0, NULL, 0, mark);
}

/* shareArena(h, words: Uint32Array): the value arena (again after it grew). */
static napi_value js_share_arena(napi_env env, napi_callback_info info) {
  ARGS(2);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  size_t len = 0;
  napi_value ab;
  uint32_t *words = get_typed(env, argv[1], napi_uint32_array, &len);
  napi_ref ref = NULL;
  if (!words || len < 2 || napi_get_typedarray_info(env, argv[1], NULL, NULL, NULL, &ab, NULL) != napi_ok ||
      napi_create_reference(env, ab, 1, &ref) != napi_ok)
    return throw_code(env, "EINVAL", "shareArena: expected the arena's Uint32Array");
  if (s->state != S_MOUNTED) { napi_delete_reference(env, ref); return NULL; }
  pthread_mutex_lock(&s->vmu);
  s->arena = words;
  s->arena_words = len;
  pthread_mutex_unlock(&s->vmu);
  /* the session thread reads the old array only under vmu: it is free to go */
  if (s->arena_ref) napi_delete_reference(env, s->arena_ref);
  s->arena_ref = ref;
  return NULL;
}

/* serveStored(h, ino, slot, signed, attr: Float64Array(9), attrTimeout) -> registered. Refused (false)
 * when the attributes differ from those of the values already registered in
 * more than ino and mode: they are kept once per session. */
static napi_value js_serve_stored(napi_env env, napi_callback_info info) {
  ARGS(6);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  double ino = get_num(env, argv[1], 0), slot = get_num(env, argv[2], -1), timeout = get_num(env, argv[5], 0);
  bool is_signed = false;
  napi_get_value_bool(env, argv[3], &is_signed);
  size_t n_attr = 0;
  double *attr = get_typed(env, argv[4], napi_float64_array, &n_attr);
  if (!attr || n_attr < 9) return throw_code(env, "EINVAL", "serveStored: attr must be a Float64Array(9)");
  uint32_t mode = (uint32_t)attr[1];
  int ok = 0;
  pthread_mutex_lock(&s->vmu);
  if (!s->stored.count) s->stored_attr_set = 0;   /* a fresh start: take these attributes */
  int same = !s->stored_attr_set ||
             (memcmp(attr + 2, s->stored_attr + 2, 7 * sizeof *attr) == 0 && timeout == s->stored_timeout);
  if (s->state == S_MOUNTED && s->arena && same && ino >= 1 && ino < 9007199254740992.0 && slot >= 1 &&
      slot * 2 + 1 < (double)s->arena_words && attr[0] == ino && !(mode & STORED_SIGNED)) {
    ok = stored_put(&s->stored, (uint64_t)ino, (uint32_t)slot, mode | (is_signed ? STORED_SIGNED : 0)) == 0;
    if (ok && !s->stored_attr_set) {
      memcpy(s->stored_attr, attr, sizeof s->stored_attr);
      s->stored_timeout = timeout;
      s->stored_attr_set = 1;
    }
  }
  pthread_mutex_unlock(&s->vmu);
  return js_bool(env, ok);
}

/* dropStored(h): forget every registration. */
static napi_value js_drop_stored(napi_env env, napi_callback_info info) {
  ARGS(1);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  pthread_mutex_lock(&s->vmu);
  stored_clear(&s->stored);     /* freed, not zeroed: a table once grown for a million values shrinks */
  pthread_mutex_unlock(&s->vmu);
  return NULL;
}

/* stats(h) -> BigUint64Array (layout: see ST_*) */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  ARGS(1);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  void *mem;
  napi_value ab, arr;
  napi_create_arraybuffer(env, ST_COUNT * sizeof(uint64_t), &mem, &ab);
  uint64_t *out = mem;
  for (int i = 0; i < ST_COUNT; i++) out[i] = __atomic_load_n(&s->stats[i], __ATOMIC_RELAXED);
  napi_create_typedarray(env, napi_biguint64_array, ST_COUNT, ab, 0, &arr);
  return arr;
}

/* setRef(h, ref): whether the mounted session keeps the event loop alive. */
static napi_value js_set_ref(napi_env env, napi_callback_info info) {
  ARGS(2);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  bool ref = false;
  napi_get_value_bool(env, argv[1], &ref);
  if (s->async) {
    if (ref) uv_ref((uv_handle_t *)s->async);
    else uv_unref((uv_handle_t *)s->async);
  }
  return NULL;
}

/* umountDetach(path): umount2(MNT_DETACH), for stale mounts (needs root). */
static napi_value js_umount_detach(napi_env env, napi_callback_info info) {
  ARGS(1);
  char *path = get_string(env, argv[0], NULL);
  if (!path) return throw_code(env, "EINVAL", "umountDetach(path: string)");
  if (umount2(path, MNT_DETACH) != 0) {
    int e = errno;
    throw_code(env, errno_code(e), "cannot detach %s: %s%s", path, strerror(e),
               e == EINVAL ? " (not a mount point)" : "");
  }
  free(path);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  static int log_installed;
  if (!log_installed) {
    fuse_set_log_func(log_func);
    log_installed = 1;
  }
  static const struct { const char *name; napi_callback fn; } fns[] = {
    { "mount", js_mount },
    { "unmount", js_unmount },
    { "replyErr", js_reply_err },
    { "replyEntry", js_reply_entry },
    { "replyAttr", js_reply_attr },
    { "replyOpen", js_reply_open },
    { "allocSnapshot", js_alloc_snapshot },
    { "fillSnapshot", js_fill_snapshot },
    { "setSnapshotBudget", js_set_snapshot_budget },
    { "budgetSpent", js_budget_spent },
    { "replyOpendir", js_reply_opendir },
    { "replyWrite", js_reply_write },
    { "invalidateEntry", js_invalidate_entry },
    { "invalidateInode", js_invalidate_inode },
    { "markSent", js_mark_sent },
    { "stats", js_stats },
    { "shareArena", js_share_arena },
    { "serveStored", js_serve_stored },
    { "dropStored", js_drop_stored },
    { "setRef", js_set_ref },
    { "umountDetach", js_umount_detach },
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  napi_value n;
  napi_create_uint32(env, ST_COUNT, &n);
  napi_set_named_property(env, exports, "STATS_LENGTH", n);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
