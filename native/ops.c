/*
 * The low-level operations, on the session thread. Those that need the tree
 * are queued to JS (to_js); the rest are answered here: reads from the open
 * file's snapshot, directory listings kept since opendir, statfs, refusals,
 * and open and getattr of the stored values JS registered.
 */
#include "statsfs.h"

static void ms_to_ts(double ms, struct timespec *ts) {
  if (!isfinite(ms)) ms = 0;
  double sec = floor(ms / 1000.0);
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = (long)((ms - sec * 1000.0) * 1e6);
  if (ts->tv_nsec < 0) ts->tv_nsec = 0;
  if (ts->tv_nsec > 999999999) ts->tv_nsec = 999999999;
}

void fill_stat(struct stat *st, uint64_t ino, uint32_t mode, uint64_t nlink, double size,
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
    uint32_t seq = __atomic_load_n(&a[ARENA_SEQ], __ATOMIC_ACQUIRE);
    if (!(seq & 1)) {
      uint32_t lo = __atomic_load_n(&a[ARENA_WORDS_PER_SLOT * (size_t)slot], __ATOMIC_RELAXED);
      uint32_t hi = __atomic_load_n(&a[ARENA_WORDS_PER_SLOT * (size_t)slot + 1], __ATOMIC_RELAXED);
      __atomic_thread_fence(__ATOMIC_ACQUIRE);
      if (__atomic_load_n(&a[ARENA_SEQ], __ATOMIC_RELAXED) == seq) {
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
    fill_stat(&st, ino, e->mode & ~STORED_SIGNED, (uint64_t)a[A_NLINK], a[A_SIZE], (uint32_t)a[A_UID], (uint32_t)a[A_GID],
              a[A_MTIME], a[A_CTIME], a[A_ATIME]);
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

/* An EV_FORGET item with room for `count` (ino, nlookup) pairs, or NULL (no memory, or JS does not count). */
static item *forget_item(session *s, size_t count) {
  if (!(s->flags & MF_FORGET) || count == 0) return NULL;
  item *it = item_new(NULL, EV_FORGET, K_FORGET, 0, count * 2 * sizeof(double));
  if (it) it->u.count = count;
  return it;
}

static void queue_forgets(session *s, const struct fuse_forget_data *f, size_t count) {
  /* A forgotten inode is looked up anew before its next open, and registered again by JS. */
  pthread_mutex_lock(&s->vmu);
  for (size_t i = 0; s->stored.count && i < count; i++) stored_remove(&s->stored, f[i].ino);
  pthread_mutex_unlock(&s->vmu);
  item *it = forget_item(s, count);
  if (!it) return;
  double *pairs = (double *)it->data;
  for (size_t i = 0; i < count; i++) {
    pairs[2 * i] = (double)f[i].ino;
    pairs[2 * i + 1] = (double)f[i].nlookup;
  }
  if (enqueue(s, it) != 0) free(it);
}

/* JS counted one lookup per entry of a listing at opendir, as if readdirplus handed each to the kernel
 * once. When the kernel lists from its cache it hands none; a rewound listing hands some twice. At
 * release the difference goes back to JS as forgets of 1 - (times handed): negative ones add lookups. */
static void queue_listing_corrections(session *s, const dirlist *d) {
  size_t off = 0;
  for (uint32_t i = 0; i < d->count; i++) off += d->listed[i] != 1;
  item *it = forget_item(s, off);
  if (!it) return;
  double *pairs = (double *)it->data;
  off = 0;
  for (uint32_t i = 0; i < d->count; i++) {
    if (d->listed[i] == 1) continue;
    pairs[2 * off] = (double)d->ents[i].ino;
    pairs[2 * off + 1] = 1.0 - (double)d->listed[i];
    off++;
  }
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
    if (plus && i >= 2) d->listed[i - 2]++;
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
  queue_listing_corrections(s, d);
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

const struct fuse_lowlevel_ops statsfs_ops = {
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

