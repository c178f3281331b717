/*
 * N-API: the replies JS gives to the requests it was handed (dispatch.c),
 * each taking its request out of its slot and answering the kernel.
 */
#include "statsfs.h"

/* Every reply starts alike: its n arguments, the session (argv[0]) and the request it answers (argv[1], one
 * of events ev1..ev2). A request already answered (or failed) gives false, so JS can tell. Declares s, it. */
#define TAKE_REPLY(n, ev1, ev2)                                                \
  ARGS(n);                                                                     \
  session *s = get_session(env, argv[0]);                                      \
  if (!s) return NULL;                                                         \
  item *it = take_reply(env, s, argv[1], (ev1), (ev2));                        \
  if (!it) return js_bool(env, false)

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

/* attr: a Float64Array laid out as STATSFS_ATTR (contract.h) */
static int get_attr(napi_env env, napi_value v, struct stat *st) {
  size_t len;
  double *a = get_typed(env, v, napi_float64_array, &len);
  if (!a || len < A_COUNT) return -1;
  fill_stat(st, (uint64_t)a[A_INO], (uint32_t)a[A_MODE], (uint64_t)a[A_NLINK], a[A_SIZE], (uint32_t)a[A_UID],
            (uint32_t)a[A_GID], a[A_MTIME], a[A_CTIME], a[A_ATIME]);
  return 0;
}

napi_value js_reply_err(napi_env env, napi_callback_info info) {
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
napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  TAKE_REPLY(5, EV_LOOKUP, EV_LOOKUP);
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  if (get_attr(env, argv[2], &e.attr) != 0) {
    fail_item(s, it, EIO);
    return throw_code(env, "EINVAL", "replyEntry: attr must be a Float64Array(%d)", A_COUNT);
  }
  e.ino = e.attr.st_ino;
  e.entry_timeout = get_num(env, argv[3], 0);
  e.attr_timeout = get_num(env, argv[4], 0);
  fuse_reply_entry(it->req, &e);
  finish(s, it);
  return js_bool(env, true);
}

/* replyAttr(h, id, attr, attrTimeout) for getattr and setattr */
napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  TAKE_REPLY(4, EV_GETATTR, EV_SETATTR);
  struct stat st;
  if (get_attr(env, argv[2], &st) != 0) {
    fail_item(s, it, EIO);
    return throw_code(env, "EINVAL", "replyAttr: attr must be a Float64Array(%d)", A_COUNT);
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
  item *it = slot_peek(s, get_num(env, idv, -1));
  return it && it->ev == EV_OPEN ? it : NULL;
}

/* allocSnapshot(h, id, len) -> the request waits for fillSnapshot and replyOpen(h, id, null);
 * false: the request was answered, EMFILE (over the caller's budget) or ENOMEM. */
napi_value js_alloc_snapshot(napi_env env, napi_callback_info info) {
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
napi_value js_fill_snapshot(napi_env env, napi_callback_info info) {
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
napi_value js_reply_open(napi_env env, napi_callback_info info) {
  TAKE_REPLY(3, EV_OPEN, EV_OPEN);
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

/* replyOpendir(h, id, names: string ('\0'-joined), inos: Float64Array, modes: Uint32Array,
 *              sizes: Float64Array|null, mtimesMs: Float64Array|null,
 *              meta: Float64Array laid out as STATSFS_DIR_META) */
napi_value js_reply_opendir(napi_env env, napi_callback_info info) {
  TAKE_REPLY(8, EV_OPENDIR, EV_OPENDIR);

  size_t n_ino = 0, n_mode = 0, n_size = 0, n_mtime = 0, n_meta = 0, names_len = 0;
  double *inos = get_typed(env, argv[3], napi_float64_array, &n_ino);
  uint32_t *modes = get_typed(env, argv[4], napi_uint32_array, &n_mode);
  double *sizes = get_typed(env, argv[5], napi_float64_array, &n_size);
  double *mtimes = get_typed(env, argv[6], napi_float64_array, &n_mtime);
  double *meta = get_typed(env, argv[7], napi_float64_array, &n_meta);
  const char *bad = NULL;
  if (napi_get_value_string_utf8(env, argv[2], NULL, 0, &names_len) != napi_ok) bad = "names must be a string";
  else if (!inos || !modes || !meta || n_meta < DM_COUNT) bad = "inos, modes and meta must be typed arrays";
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
  dirlist *d = malloc(sizeof *d + count * (sizeof(dent) + sizeof(uint32_t)) + names_len + 1);
  if (!d) { fail_item(s, it, ENOMEM); return js_bool(env, true); }
  d->ents = (dent *)(d + 1);
  d->listed = (uint32_t *)(d->ents + count);
  memset(d->listed, 0, count * sizeof(uint32_t));
  d->names = (char *)(d->listed + count);
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
  d->self = (fuse_ino_t)meta[DM_SELF];
  d->parent = (fuse_ino_t)meta[DM_PARENT];
  d->uid = (uint32_t)meta[DM_UID];
  d->gid = (uint32_t)meta[DM_GID];
  d->entry_timeout = meta[DM_ENTRY_TIMEOUT];
  d->attr_timeout = meta[DM_ATTR_TIMEOUT];
  /* A listing the kernel keeps costs no readdir at the next `ls`; KEEP only when JS says it is the very
   * listing the kernel was handed last, so the kernel never shows a listing older than this opendir. */
  it->fi.cache_readdir = meta[DM_CACHE] == DIR_CACHE_FRESH || meta[DM_CACHE] == DIR_CACHE_KEEP;
  it->fi.keep_cache = meta[DM_CACHE] == DIR_CACHE_KEEP;
  if (reply_with_handle(s, it->req, &it->fi, &s->dirs, &d->link, ST_OPEN_DIRS) != 0) free(d);
  finish(s, it);
  return js_bool(env, true);
}

/* replyWrite(h, id, written) */
napi_value js_reply_write(napi_env env, napi_callback_info info) {
  TAKE_REPLY(3, EV_WRITE, EV_WRITE);
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
