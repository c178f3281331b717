/*
 * The contract between the binding and src/fs/native.ts, defined once: every
 * code, flag and array layout that crosses between C and JS. Each list is an
 * X-macro, expanded here into the C enums and in contract.c into the object
 * init() exports as `contract`. TypeScript reads the numbers from that object
 * and checks at load that the names (and each event's arguments) are the ones
 * it was written for (src/fs/native-contract.ts), so a mismatch fails loudly
 * at the first mount instead of answering the wrong request.
 */
#ifndef STATSFS_CONTRACT_H
#define STATSFS_CONTRACT_H

/* Request kinds, counted in the statistics in this order (OP_NAMES). */
#define STATSFS_OPS(X)                                                          \
  X(LOOKUP, "lookup") X(FORGET, "forget") X(GETATTR, "getattr")                 \
  X(SETATTR, "setattr") X(OPEN, "open") X(READ, "read") X(WRITE, "write")       \
  X(FLUSH, "flush") X(RELEASE, "release") X(OPENDIR, "opendir")                 \
  X(READDIR, "readdir") X(RELEASEDIR, "releasedir") X(STATFS, "statfs")         \
  X(OTHER, "other")

enum op_kind {
#define X(id, name) K_##id,
  STATSFS_OPS(X)
#undef X
  K_COUNT
};

/* Statistics (stats(h), a BigUint64Array): K_COUNT request counters, K_COUNT
 * error-reply counters, then these. */
#define STATSFS_GAUGES(X)                                                       \
  X(BYTES_READ, "bytesRead")                                                    \
  X(OPEN_FILES, "openFiles")                                                    \
  X(OPEN_DIRS, "openDirs")                                                      \
  X(IN_FLIGHT, "inFlight")            /* requests queued to or held by JS */    \
  X(SNAPSHOT_BYTES, "snapshotBytes")  /* held by open files and snapshots being filled */ \
  X(OVER_BUDGET, "overBudget")        /* opens refused EMFILE: the caller's snapshot budget was spent */

enum {
  ST_REQUESTS = 0,
  ST_ERRORS = K_COUNT,
  ST_GAUGES_ = 2 * K_COUNT - 1,       /* the first gauge follows */
#define X(id, name) ST_##id,
  STATSFS_GAUGES(X)
#undef X
  ST_COUNT
};

/*
 * Events passed to the JS dispatch function as (event, id, arguments...): id
 * names the request held for a reply (0 for events that need none), and the
 * arguments are listed as "name:type", type one of number, string, Buffer,
 * Float64Array. dispatch.c encodes event FOO with enc_FOO, which must push
 * exactly these.
 */
#define STATSFS_EVENTS(X)                                                       \
  X(LOOKUP, "lookup", "parent:number name:string")                              \
  X(GETATTR, "getattr", "ino:number")                                           \
  X(SETATTR, "setattr", "ino:number valid:number size:number mode:number uid:number gid:number") \
  X(OPENDIR, "opendir", "ino:number")                                           \
  X(OPEN, "open", "ino:number flags:number uid:number")                         \
  X(WRITE, "write", "ino:number data:Buffer offset:number accepted:number")     \
  X(FORGET, "forget", "pairs:Float64Array")                                     \
  X(ENDED, "ended", "")                                                         \
  X(LOG, "log", "level:number line:string")                                     \
  X(SENT, "sent", "mark:number")

enum {
#define X(id, name, args) EV_##id,
  STATSFS_EVENTS(X)
#undef X
  EV_COUNT
};

/* mount() flags. */
#define STATSFS_MOUNT_FLAGS(X)                                                  \
  X(DEBUG, "debug", 1)          /* every libfuse log line becomes an EV_LOG */  \
  X(FORGET, "forget", 2)        /* forgets are dispatched (EV_FORGET) */

enum {
#define X(id, name, bit) MF_##id = bit,
  STATSFS_MOUNT_FLAGS(X)
#undef X
};

/* The attributes of replyEntry, replyAttr and serveStored: a Float64Array of
 * A_COUNT, at these indices. ino and mode come first: serveStored shares the
 * rest among every registered value. */
#define STATSFS_ATTR(X)                                                         \
  X(INO, "ino") X(MODE, "mode") X(NLINK, "nlink") X(SIZE, "size")               \
  X(UID, "uid") X(GID, "gid") X(MTIME, "mtimeMs") X(CTIME, "ctimeMs")           \
  X(ATIME, "atimeMs")

enum {
#define X(id, name) A_##id,
  STATSFS_ATTR(X)
#undef X
  A_COUNT,
  A_SHARED = A_NLINK            /* from here on, serveStored's attributes are the same for every value */
};
_Static_assert(A_INO == 0 && A_MODE == 1 && A_SHARED == 2, "serveStored compares the attributes after ino and mode");

/* The meta argument of replyOpendir: a Float64Array of DM_COUNT. */
#define STATSFS_DIR_META(X)                                                     \
  X(SELF, "self") X(PARENT, "parent") X(UID, "uid") X(GID, "gid")               \
  X(ENTRY_TIMEOUT, "entryTimeout") X(ATTR_TIMEOUT, "attrTimeout") X(CACHE, "cache")

enum {
#define X(id, name) DM_##id,
  STATSFS_DIR_META(X)
#undef X
  DM_COUNT
};

/* meta[DM_CACHE]: whether the kernel may keep the listing in its page cache (cache_readdir):
 * NONE no, every opendir's readdir reaches the session thread; FRESH yes, dropping whatever it kept
 * (the listing is not the one it was last handed); KEEP yes, keeping what it has (the same listing as
 * the last opendir of this directory). */
#define STATSFS_DIR_CACHE(X) X(NONE, "none") X(FRESH, "fresh") X(KEEP, "keep")

enum {
#define X(id, name) DIR_CACHE_##id,
  STATSFS_DIR_CACHE(X)
#undef X
  DIR_CACHE_COUNT
};

/* The `valid` argument of EV_SETATTR: libfuse's own bits, passed through. */
#define STATSFS_SETATTR(X)                                                      \
  X("mode", FUSE_SET_ATTR_MODE) X("uid", FUSE_SET_ATTR_UID)                     \
  X("gid", FUSE_SET_ATTR_GID) X("size", FUSE_SET_ATTR_SIZE)                     \
  X("atime", FUSE_SET_ATTR_ATIME) X("mtime", FUSE_SET_ATTR_MTIME)               \
  X("atimeNow", FUSE_SET_ATTR_ATIME_NOW) X("mtimeNow", FUSE_SET_ATTR_MTIME_NOW)

/* The value arena shared by shareArena (SlotArena in src/model/arena.ts): 32-bit
 * words; ARENA_SEQ is the write sequence (a seqlock, odd during a write); slot n
 * is the 64-bit word at words ARENA_WORDS_PER_SLOT * n (low half) and the next
 * (high half); slots from ARENA_FIRST_SLOT hold values. */
#define STATSFS_ARENA(X)                                                        \
  X(SEQ, "sequenceWord", 0) X(WORDS_PER_SLOT, "wordsPerSlot", 2)                \
  X(FIRST_SLOT, "firstSlot", 1)

enum {
#define X(id, name, v) ARENA_##id = v,
  STATSFS_ARENA(X)
#undef X
};

#endif
