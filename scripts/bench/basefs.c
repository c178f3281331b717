/*
 * basefs: the C baseline of the statsfs benchmarks (built and driven by scripts/bench/). A minimal
 * filesystem on the libfuse3 low-level API, doing what statsfs does for the same requests, in C only.
 *
 *   basefs <mountpoint> [--dirs N] [--cache-seconds S] [--mt]
 *
 *   /value       0644 file: a counter incremented at every open; the text "%llu\n" is captured at open
 *                (the per-open snapshot) and every read of that open file is served from it
 *   /ls/         N (default 10,000) empty subdirectories s0 .. s<N-1>, 0755
 *
 * What matches statsfs's defaults (native/, src/fs/adapter.ts, src/fs/native.ts, and the
 * daemon's --cache-seconds 1), so that the comparison measures the implementation, not the settings:
 *   - the same FUSE_USE_VERSION (312) and mount options: fsname/subtype, default_permissions, no
 *     allow_other (statsfs runs with --no-allow-other / allowOther: false in the benchmarks);
 *   - entry and attribute timeouts of S seconds (default 1) in lookup, getattr and readdirplus replies;
 *   - readdirplus always (READDIRPLUS wanted, READDIRPLUS_AUTO cleared), as statsfs's init does;
 *   - files: size 0, served with direct_io and without keep_cache, so every read reaches the daemon;
 *     flush is implemented (statsfs answers it; an ENOSYS would let the kernel skip it from then on);
 *   - directories: the listing is captured at opendir and served from that copy by readdir(plus) with
 *     the same offsets (0 ".", 1 "..", 2+i entry i) and the same attributes (nlink 2 for directories,
 *     uid/gid of the daemon, one mtime for all); extended attributes answer ENOSYS as in statsfs;
 *   - one session thread by default, like statsfs's single session thread; --mt uses libfuse's
 *     multi-threaded loop instead (reported separately, it is not what statsfs does).
 * What differs, on purpose: everything runs in C on the session thread, where statsfs hands lookup,
 * getattr, open and opendir to its JavaScript thread and waits on /dev/fuse with poll().
 *
 * Prints "ready" on stdout once mounted; SIGTERM/SIGINT unmount and exit 0.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

enum { INO_ROOT = 1, INO_VALUE = 2, INO_LS = 3, INO_FIRST_DIR = 4 };

static unsigned long n_dirs = 10000;
static double cache_s = 1.0;
static uint64_t opens;          /* the counter behind /value */
static struct timespec born;    /* one mtime for everything, like the adapter's bornMs */

typedef struct {                /* fi->fh of an open /value */
  size_t len;
  char text[24];
} value_snap;

typedef struct {                /* fi->fh of an open directory: its listing, captured at opendir */
  fuse_ino_t self, parent;
  size_t count;
  fuse_ino_t *inos;
  mode_t *modes;
  char **names;
  char *name_buf;
} listing;

static void fill_attr(struct stat *st, fuse_ino_t ino, int nlink) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = ino == INO_VALUE ? S_IFREG | 0644 : S_IFDIR | 0755;
  st->st_nlink = nlink;
  st->st_uid = getuid();
  st->st_gid = getgid();
  st->st_blksize = 4096;
  st->st_mtim = st->st_ctim = st->st_atim = born;
}

static int valid_ino(fuse_ino_t ino) { return ino >= INO_ROOT && ino < INO_FIRST_DIR + n_dirs; }

/* "s<k>" with k < n_dirs and no leading zeros, else 0 */
static fuse_ino_t dir_ino(const char *name) {
  if (name[0] != 's' || name[1] < '0' || name[1] > '9' || (name[1] == '0' && name[2])) return 0;
  char *end;
  unsigned long k = strtoul(name + 1, &end, 10);
  return *end || k >= n_dirs ? 0 : INO_FIRST_DIR + k;
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = ino;
  e.entry_timeout = e.attr_timeout = cache_s;
  fill_attr(&e.attr, ino, 1);   /* the adapter reports nlink 1 in lookup and getattr */
  fuse_reply_entry(req, &e);
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  fuse_ino_t ino = 0;
  if (parent == INO_ROOT) ino = !strcmp(name, "value") ? INO_VALUE : !strcmp(name, "ls") ? INO_LS : 0;
  else if (parent == INO_LS) ino = dir_ino(name);
  if (ino) reply_entry(req, ino);
  else fuse_reply_err(req, ENOENT);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) { fuse_reply_none(req); }

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (!valid_ino(ino)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct stat st;
  fill_attr(&st, ino, 1);
  fuse_reply_attr(req, &st, cache_s);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino != INO_VALUE) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  value_snap *v = malloc(sizeof *v);
  if (!v) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  unsigned long long n = __atomic_add_fetch(&opens, 1, __ATOMIC_RELAXED);
  v->len = (size_t)snprintf(v->text, sizeof v->text, "%llu\n", n);
  fi->fh = (uint64_t)(uintptr_t)v;
  fi->direct_io = 1;
  fi->keep_cache = 0;
  if (fuse_reply_open(req, fi) != 0) free(v);   /* the opener is gone: no release will come */
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  value_snap *v = (value_snap *)(uintptr_t)fi->fh;
  if (off < 0 || (size_t)off >= v->len) {
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  size_t n = v->len - (size_t)off;
  fuse_reply_buf(req, v->text + off, n < size ? n : size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { fuse_reply_err(req, 0); }

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  free((void *)(uintptr_t)fi->fh);
  fuse_reply_err(req, 0);
}

static void free_listing(listing *l) {
  if (!l) return;
  free(l->inos);
  free(l->modes);
  free(l->names);
  free(l->name_buf);
  free(l);
}

/* The directory's entries, copied now: what statsfs's opendir hands to C. */
static listing *capture(fuse_ino_t ino) {
  listing *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->self = ino;
  l->parent = INO_ROOT;
  l->count = ino == INO_ROOT ? 2 : ino == INO_LS ? n_dirs : 0;
  size_t n = l->count ? l->count : 1;
  l->inos = malloc(n * sizeof *l->inos);
  l->modes = malloc(n * sizeof *l->modes);
  l->names = malloc(n * sizeof *l->names);
  l->name_buf = malloc(n * 16);
  if (!l->inos || !l->modes || !l->names || !l->name_buf) {
    free_listing(l);
    return NULL;
  }
  char *p = l->name_buf;
  for (size_t i = 0; i < l->count; i++) {
    if (ino == INO_ROOT) {
      l->inos[i] = i == 0 ? INO_VALUE : INO_LS;
      strcpy(p, i == 0 ? "value" : "ls");
    } else {
      l->inos[i] = INO_FIRST_DIR + i;
      sprintf(p, "s%zu", i);
    }
    l->modes[i] = l->inos[i] == INO_VALUE ? S_IFREG | 0644 : S_IFDIR | 0755;
    l->names[i] = p;
    p += strlen(p) + 1;
  }
  return l;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino == INO_VALUE || !valid_ino(ino)) {
    fuse_reply_err(req, ino == INO_VALUE ? ENOTDIR : ENOENT);
    return;
  }
  listing *l = capture(ino);
  if (!l) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  fi->fh = (uint64_t)(uintptr_t)l;
  if (fuse_reply_open(req, fi) != 0) free_listing(l);
}

static void list(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, int plus) {
  listing *l = (listing *)(uintptr_t)fi->fh;
  char *buf = malloc(size);
  if (!buf) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  size_t used = 0;
  for (size_t i = off < 0 ? 0 : (size_t)off; i < l->count + 2; i++) {
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    const char *name;
    if (i < 2) {
      name = i == 0 ? "." : "..";
      e.attr.st_ino = i == 0 ? l->self : l->parent;
      e.attr.st_mode = S_IFDIR | 0755;
    } else {
      name = l->names[i - 2];
      e.ino = l->inos[i - 2];
      fill_attr(&e.attr, e.ino, S_ISDIR(l->modes[i - 2]) ? 2 : 1);
      e.entry_timeout = e.attr_timeout = cache_s;
    }
    size_t need = plus ? fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)(i + 1))
                       : fuse_add_direntry(req, buf + used, size - used, name, &e.attr, (off_t)(i + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  list(req, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  list(req, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  free_listing((listing *)(uintptr_t)fi->fh);
  fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = st.f_frsize = 4096;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) { fuse_reply_err(req, ENOSYS); }
static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) { fuse_reply_err(req, ENOSYS); }

/* grouped by what the benchmarks exercise: the value file, the directory listing, names, the rest */
static const struct fuse_lowlevel_ops ops = {
  .open = op_open,
  .read = op_read,
  .flush = op_flush,
  .release = op_release,
  .opendir = op_opendir,
  .readdirplus = op_readdirplus,
  .readdir = op_readdir,
  .releasedir = op_releasedir,
  .lookup = op_lookup,
  .getattr = op_getattr,
  .forget = op_forget,
  .forget_multi = op_forget_multi,
  .init = op_init,
  .statfs = op_statfs,
  .getxattr = op_getxattr,
  .listxattr = op_listxattr,
};

static int usage(const char *self) {
  fprintf(stderr, "usage: %s <mountpoint> [--dirs N] [--cache-seconds S] [--mt]\n", self);
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage(argv[0]);
  const char *mnt = argv[1];
  int mt = 0;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--dirs") && i + 1 < argc) n_dirs = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--cache-seconds") && i + 1 < argc) cache_s = strtod(argv[++i], NULL);
    else if (!strcmp(argv[i], "--mt")) mt = 1;
    else return usage(argv[0]);
  }
  clock_gettime(CLOCK_REALTIME, &born);

  char *fargv[] = { argv[0], "-o", "fsname=basefs,subtype=basefs,default_permissions", NULL };
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  fuse_opt_free_args(&args);
  if (!se) return 1;
  if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, mnt) != 0) {
    fuse_session_destroy(se);
    return 1;
  }
  printf("ready\n");
  fflush(stdout);

  int rc;
  if (mt) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
  } else {
    rc = fuse_session_loop(se);
  }
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  return rc < 0 ? 1 : 0;
}
