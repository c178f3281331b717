/*
 * N-API glue: argument helpers, mount and unmount, the functions that are no
 * reply (budgets, invalidations, stored values, statistics), and init(),
 * which exports them with the contract (contract.c).
 */
#include "statsfs.h"
#include "statsd_recv.h"

/* ------------------------------------------------------------------ */
/* N-API helpers                                                       */

napi_value throw_code(napi_env env, const char *code, const char *fmt, ...) {
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

static char *get_string(napi_env env, napi_value v, size_t *len_out) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *buf = malloc(len + 1);
  if (!buf) return NULL;
  napi_get_value_string_utf8(env, v, buf, len + 1, &len);
  if (len_out) *len_out = len;
  return buf;
}

double get_num(napi_env env, napi_value v, double dflt) {
  double d;
  return napi_get_value_double(env, v, &d) == napi_ok ? d : dflt;
}

/* Typed array data of the expected type, or NULL (also for null/undefined).
 * An empty array may have no data pointer at all: it still is an array (an
 * empty directory's columns), so it gets a non-NULL pointer to nothing. */
void *get_typed(napi_env env, napi_value v, napi_typedarray_type want, size_t *len) {
  static uint64_t empty;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return NULL;
  napi_typedarray_type t;
  void *data;
  if (napi_get_typedarray_info(env, v, &t, len, &data, NULL, NULL) != napi_ok || t != want) return NULL;
  return data != NULL || *len != 0 ? data : &empty;
}

session *get_session(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    throw_code(env, "EINVAL", "not a statsfs fuse session handle");
    return NULL;
  }
  return p;
}

napi_value js_bool(napi_env env, bool b) {
  napi_value r;
  napi_get_boolean(env, b, &r);
  return r;
}

napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static void finalize_session(napi_env env, void *data, void *hint) {
  session *s = data;
  shutdown_session(s);   /* no-op unless the handle was dropped while mounted */
  session_free(s);
}

/* ------------------------------------------------------------------ */
/* mount and unmount                                                   */

/* Pre-checks that give precise codes (libfuse reports most of these as text).
 * 0, or -1 with an exception thrown. */
static int check_mountpoint(napi_env env, const char *mnt) {
  struct stat st;
  if (stat(mnt, &st) != 0) {
    int e = errno;
    if (e == ENOTCONN)
      throw_code(env, "ENOTCONN", "mountpoint %s is a stale FUSE mount (%s); detach it with lazyUnmount()",
                 mnt, strerror(e));
    else
      throw_code(env, errno_code(e), "cannot mount on %s: %s", mnt, strerror(e));
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    throw_code(env, "ENOTDIR", "cannot mount on %s: not a directory", mnt);
    return -1;
  }
  int probe = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (probe < 0) {
    /* Present but not ours to open: libfuse would fail the same way (it opens it as the caller). */
    int e = errno;
    if (e == EACCES || e == EPERM)
      throw_code(env, "EACCES", "cannot open /dev/fuse: %s", strerror(e));
    else
      throw_code(env, "ENOFUSE", "FUSE is unusable: cannot open /dev/fuse: %s", strerror(e));
    return -1;
  }
  close(probe);
  return 0;
}

/* What connects a mounted session to the JS thread: the eventfd that stops the
 * session thread, the async handle it wakes JS with, the async context and the
 * dispatch function. 0, or -1 with an exception thrown (and the session unmounted). */
static int connect_js(napi_env env, session *s, napi_value dispatch) {
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
    return -1;
  }
  s->async->data = s;
  napi_create_reference(env, dispatch, 1, &s->dispatch);
  return 0;
}

/* mount(mountpoint, options: string, dispatch: Function, flags: MF_*) -> handle */
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
  char msg[1024];
  const char *code;

  if (!mnt || !opts || fnt != napi_function) {
    throw_code(env, "EINVAL", "mount(mountpoint: string, options: string, dispatch: function, flags)");
    goto out;
  }
  if (check_mountpoint(env, mnt) != 0) goto out;
  s = session_new(flags);
  if (!s) { throw_code(env, "ENOMEM", "out of memory"); goto out; }
  s->env = env;
  if ((code = session_fuse_mount(s, mnt, opts, msg, sizeof msg)) != NULL) {
    throw_code(env, code, "%s", msg);
    goto fail;
  }
  if (connect_js(env, s, argv[2]) != 0) goto fail;
  s->mountpoint = mnt;
  mnt = NULL;
  session_start(s);
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

/* ------------------------------------------------------------------ */
/* Snapshot budget                                                     */

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

/* ------------------------------------------------------------------ */
/* Kernel cache invalidations                                          */

static napi_value notify(napi_env env, session *s, fuse_ino_t ino, const char *name, size_t namelen, double mark) {
  int queued = queue_notif(s, ino, name, namelen, mark);
  return queued < 0 ? throw_code(env, "ENOMEM", "out of memory") : js_bool(env, queued);
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
  napi_value r = notify(env, s, (fuse_ino_t)get_num(env, argv[1], 0), name, len, 0);
  free(name);
  return r;
}

/* invalidateInode(h, ino) -> queued */
static napi_value js_invalidate_inode(napi_env env, napi_callback_info info) {
  ARGS(2);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  return notify(env, s, (fuse_ino_t)get_num(env, argv[1], 0), NULL, 0, 0);
}

/* markSent(h, mark) -> queued: once every invalidation queued before it has been
 * sent to the kernel, EV_SENT(mark) is dispatched. */
static napi_value js_mark_sent(napi_env env, napi_callback_info info) {
  ARGS(2);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  double mark = get_num(env, argv[1], 0);
  if (!(mark > 0)) return throw_code(env, "EINVAL", "markSent: mark must be a positive number");
  return notify(env, s, 0, NULL, 0, mark);
}

/* ------------------------------------------------------------------ */
/* Stored values, statistics, the rest                                 */

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

/* serveStored(h, ino, slot, signed, attr: Float64Array(A_COUNT), attrTimeout) -> registered. Refused (false)
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
  if (!attr || n_attr < A_COUNT) return throw_code(env, "EINVAL", "serveStored: attr must be a Float64Array(%d)", A_COUNT);
  uint32_t mode = (uint32_t)attr[A_MODE];
  int ok = 0;
  pthread_mutex_lock(&s->vmu);
  if (!s->stored.count) s->stored_attr_set = 0;   /* a fresh start: take these attributes */
  int same = !s->stored_attr_set ||
             (memcmp(attr + A_SHARED, s->stored_attr + A_SHARED, (A_COUNT - A_SHARED) * sizeof *attr) == 0 && timeout == s->stored_timeout);
  if (s->state == S_MOUNTED && s->arena && same && ino >= 1 && ino < 9007199254740992.0 && slot >= ARENA_FIRST_SLOT &&
      slot * ARENA_WORDS_PER_SLOT + 1 < (double)s->arena_words && attr[A_INO] == ino && !(mode & STORED_SIGNED)) {
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

/* waiting(h) -> whether events wait in the queue for the JS thread: a writer working in slices
 * (producer frames) checks it between slices and yields the loop to them. */
static napi_value js_waiting(napi_env env, napi_callback_info info) {
  ARGS(1);
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  pthread_mutex_lock(&s->qmu);
  bool waiting = s->qhead != NULL;
  pthread_mutex_unlock(&s->qmu);
  return js_bool(env, waiting);
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

static const struct { const char *name; napi_callback fn; } functions[] = {
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
  { "waiting", js_waiting },
  { "setRef", js_set_ref },
  { "umountDetach", js_umount_detach },
  { "statsdOpen", js_statsd_open },
  { "statsdDrain", js_statsd_drain },
  { "statsdStats", js_statsd_stats },
  { "statsdClose", js_statsd_close },
};

static napi_value init(napi_env env, napi_value exports) {
  static int log_installed;
  if (!log_installed) {
    fuse_set_log_func(log_func);
    log_installed = 1;
  }
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value f;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &f);
    napi_set_named_property(env, exports, functions[i].name, f);
  }
  napi_set_named_property(env, exports, "contract", contract_object(env));
  napi_set_named_property(env, exports, "statsdLayout", statsd_layout(env));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
