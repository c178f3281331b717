/*
 * The session: what a mount holds and the threads that serve it. Requests
 * queued to JS, the snapshots open files are read from and the per-user
 * budget they are charged to, the notifier queue, the session and notifier
 * threads, mounting and the ordered shutdown.
 *
 * Longer than the other files on purpose: these parts share the session's
 * locks and lists, and the shutdown order is only readable beside them.
 */
#include "statsfs.h"

/* ------------------------------------------------------------------ */
/* Open handles                                                        */

void list_init(hnode *h) { h->prev = h->next = h; }

void list_add(session *s, hnode *h, hnode *n) {
  pthread_mutex_lock(&s->hmu);
  n->next = h->next; n->prev = h; h->next->prev = n; h->next = n;
  pthread_mutex_unlock(&s->hmu);
}

void list_del(session *s, hnode *n) {
  pthread_mutex_lock(&s->hmu);
  n->prev->next = n->next; n->next->prev = n->prev;
  pthread_mutex_unlock(&s->hmu);
}


/* libfuse log capture (process wide: fuse_set_log_func is global)     */

static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_last_log[512];
static int g_last_errno;
static session *g_debug_session;   /* receives every log line when mounted with debug */


void log_func(enum fuse_log_level level, const char *fmt, va_list ap) {
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

void reply_err(session *s, fuse_req_t req, int kind, int err) {
  if (err) stat_add(s, ST_ERRORS + kind, 1);
  fuse_reply_err(req, err);
}


/* A request held by JS has been answered: drop it, and the snapshot it was
 * filling if it was not handed over. */
void finish(session *s, item *it) {
  stat_sub(s, ST_IN_FLIGHT, 1);
  if (it->sn) snapshot_free(s, it->sn);
  free(it);
}

void fail_item(session *s, item *it, int err) {
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
snapshot *snapshot_new(const void *data, size_t len) {
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
int budget_spent(session *s, uint32_t uid, uint64_t len) {
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
int snapshot_charge(session *s, snapshot *sn, uint32_t uid) {
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
void snapshot_free(session *s, snapshot *sn) {
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
int reply_with_handle(session *s, fuse_req_t req, struct fuse_file_info *fi, hnode *list, hnode *h,
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
void reply_snapshot(session *s, fuse_req_t req, struct fuse_file_info *fi, snapshot *sn, uint32_t uid) {
  int err = sn->charged ? 0 : snapshot_charge(s, sn, uid);
  if (err) {
    free(sn);
    reply_err(s, req, K_OPEN, err);
    return;
  }
  fi->direct_io = 1;
  fi->keep_cache = 0;
  /* A read-only open needs no FLUSH: close(2) then costs no round trip (the release is sent in the
   * background). Writes keep it: every write is answered before close anyway, but a writer's close
   * stays a point where the daemon has seen everything. */
  fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
  if (reply_with_handle(s, req, fi, &s->files, &sn->link, ST_OPEN_FILES) != 0) snapshot_free(s, sn);
}

/* ------------------------------------------------------------------ */
/* Queue to JS                                                         */

item *item_new(fuse_req_t req, int ev, int kind, fuse_ino_t ino, size_t extra) {
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
int enqueue(session *s, item *it) {
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
void to_js(fuse_req_t req, item *it, int kind) {
  session *s = fuse_req_userdata(req);
  if (!it) { reply_err(s, req, kind, ENOMEM); return; }
  if (enqueue(s, it) != 0) {
    reply_err(s, req, kind, EIO);
    free(it);
  }
}

/* ------------------------------------------------------------------ */
/* Threads                                                             */

/* Our own loop instead of fuse_session_loop, so that unmount can stop the
 * thread before the fd is closed and no thread is ever left blocked in read().
 * It blocks in read(2) on /dev/fuse: one system call per request, where a
 * non-blocking read that finds nothing costs a read, a poll and a read again
 * (measured, reader and daemon on one CPU: 22 -> 19 us of daemon CPU per `cat`). Unmount wakes
 * it with WAKE_SIGNAL, which only this thread takes, caught by a handler that
 * does nothing and without SA_RESTART, so read(2) returns EINTR. Where that
 * signal already has a handler in this process, the fd is non-blocking and the
 * thread polls it together with the eventfd instead. */
#define WAKE_SIGNAL (SIGRTMIN + 5)

static void on_wake_signal(int sig) { (void)sig; }

static int g_wake_signal_ok;
static void install_wake_signal(void) {
  struct sigaction old, sa;
  if (sigaction(WAKE_SIGNAL, NULL, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) return;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_wake_signal;   /* no SA_RESTART: the blocked read(2) returns EINTR */
  sigemptyset(&sa.sa_mask);
  g_wake_signal_ok = sigaction(WAKE_SIGNAL, &sa, NULL) == 0;
}

/* Whether the session thread may block in read(2) (the handler of WAKE_SIGNAL is ours). */
static int wake_signal_ready(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, install_wake_signal);
  return g_wake_signal_ok;
}

/* Stops and joins the session thread. A signal sent just before the thread enters read(2) is
 * missed, so it is sent again until the thread has ended. */
static void stop_session_thread(session *s) {
  __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
  if (!s->blocking) {
    uint64_t one = 1;
    if (write(s->wake_fd, &one, sizeof one) < 0) { /* eventfd write cannot fail here */ }
    pthread_join(s->loop_thread, NULL);
    return;
  }
  for (;;) {
    pthread_kill(s->loop_thread, WAKE_SIGNAL);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 10 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    if (pthread_timedjoin_np(s->loop_thread, NULL, &until) == 0) return;
  }
}

static void *session_main(void *arg) {
  session *s = arg;
  if (s->blocking) {
    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, WAKE_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &wake, NULL);
  }
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
/* Shutdown                                                            */

/* Frees the handles the kernel never released (the connection is gone). */
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

void on_async_closed(uv_handle_t *h) { free(h); }

static void cleanup_hook(void *arg);

/* Unmount. Order matters:
 *  1. refuse new JS work and fail everything queued to or held by JS, while
 *     the session thread still runs (it answers new requests with EIO);
 *  2. stop the notifier: any lookup it might wait on can now be answered;
 *  3. stop and join the session thread;
 *  4. only then close the fd / unmount and destroy the session, so no
 *     thread can touch the session or a reused fd number afterwards. */
void shutdown_session(session *s) {
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

  stop_session_thread(s);

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

void session_free(session *s) {
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

/* ------------------------------------------------------------------ */
/* Mounting                                                            */

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

/* ------------------------------------------------------------------ */
/* Lifecycle (JS thread)                                               */

/* The name of an errno ("ENOENT"), EIO for 0 or an unknown one. */
const char *errno_code(int e) {
  const char *n = e ? strerrorname_np(e) : NULL;
  return n ? n : "EIO";
}

/* Queues an invalidation (namelen 0: of the inode, else of the entry `name`
 * in `ino`) or, with mark > 0, a mark the notifier reports back as EV_SENT.
 * 1: queued; 0: the session is closing; -1: no memory. */
int queue_notif(session *s, fuse_ino_t ino, const char *name, size_t namelen, double mark) {
  notif *n = malloc(sizeof *n + namelen + 1);
  if (!n) return -1;
  n->next = NULL;
  n->ino = ino;
  n->mark = mark;
  n->namelen = namelen;
  if (namelen) memcpy(n->name, name, namelen + 1);
  int queued = 0;
  pthread_mutex_lock(&s->nmu);
  if (!s->nstop && s->state == S_MOUNTED) {
    if (s->ntail) s->ntail->next = n; else s->nhead = n;
    s->ntail = n;
    pthread_cond_signal(&s->ncv);
    queued = 1;
  }
  pthread_mutex_unlock(&s->nmu);
  if (!queued) free(n);
  return queued;
}

session *session_new(int flags) {
  session *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->flags = flags;
  s->wake_fd = -1;
  pthread_mutex_init(&s->qmu, NULL);
  pthread_mutex_init(&s->nmu, NULL);
  pthread_cond_init(&s->ncv, NULL);
  pthread_mutex_init(&s->hmu, NULL);
  pthread_mutex_init(&s->vmu, NULL);
  list_init(&s->files);
  list_init(&s->dirs);
  return s;
}

/* Creates the libfuse session and mounts it at `mnt`. NULL on success, else
 * the errno name (or ENOFUSE) to throw, with the reason in `msg`. */
const char *session_fuse_mount(session *s, const char *mnt, const char *opts, char *msg, size_t cap) {
  char *fargv[] = { "statsfs", "-o", (char *)opts, NULL };
  struct fuse_args args = FUSE_ARGS_INIT(opts[0] ? 3 : 1, fargv);
  log_reset();
  s->se = fuse_session_new(&args, &statsfs_ops, sizeof statsfs_ops, s);
  fuse_opt_free_args(&args);
  if (!s->se) {
    snprintf(msg, cap, "fuse_session_new failed for options \"%s\": %s", opts,
             g_last_log[0] ? g_last_log : "unknown error");
    return "EINVAL";
  }
  stderr_capture capture;
  char said[512];
  capture_stderr(&capture);
  int mounted = fuse_session_mount(s->se, mnt);
  release_stderr(&capture, said, sizeof said);
  if (mounted != 0) {
    const char *code = errno_code(g_last_errno ? g_last_errno : EIO);
    if (said[0]) {
      /* fusermount3 refused: allow_other without user_allow_other, a mountpoint the user cannot write */
      code = strstr(said, "allow_other") || strstr(said, "access") || strstr(said, "permitted") ? "EPERM" : "EIO";
    } else if (strstr(g_last_log, "fusermount") || strstr(g_last_log, "/dev/fuse")) {
      code = "ENOFUSE";
    }
    snprintf(msg, cap, "mount on %s failed: %s", mnt, said[0] ? said : g_last_log[0] ? g_last_log : "unknown error");
    return code;
  }
  if (said[0]) fprintf(stderr, "%s\n", said);
  s->blocking = wake_signal_ready();
  if (!s->blocking) {
    int fd = fuse_session_fd(s->se);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return NULL;
}

/* Starts serving a mounted session whose event plumbing (async, dispatch) is set up. */
void session_start(session *s) {
  if (s->flags & MF_DEBUG) {
    pthread_mutex_lock(&g_log_mu);
    g_debug_session = s;
    pthread_mutex_unlock(&g_log_mu);
  }
  start_thread(&s->notify_thread, notifier_main, s);
  start_thread(&s->loop_thread, session_main, s);
  s->state = S_MOUNTED;
  napi_add_env_cleanup_hook(s->env, cleanup_hook, s);
}
