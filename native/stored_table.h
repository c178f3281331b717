/*
 * stored_table: the registry of stored values the session thread answers by
 * itself (see "Stored values" in ops.c). An open-addressing hash
 * table from inode number to arena slot and mode, 16 bytes per entry, linear
 * probing, backward-shift deletion (no tombstones, so a table that sees
 * millions of registrations and forgets never degrades). Not thread safe:
 * the session guards it with a mutex. Header-only so that
 * test/native/stored_table_test.c can check it against a reference model.
 */
#ifndef STATSFS_STORED_TABLE_H
#define STATSFS_STORED_TABLE_H

#include <stdint.h>
#include <stdlib.h>

typedef struct stored {
  uint64_t ino;                 /* 0: empty */
  uint32_t slot;
  uint32_t mode;                /* st_mode; STORED_SIGNED marks "%lld" */
} stored;

#define STORED_SIGNED 0x80000000u

typedef struct stored_table {
  stored *at;                   /* cap entries, cap a power of two (or NULL, cap 0) */
  size_t cap, count;
} stored_table;

static inline size_t stored_home(const stored_table *t, uint64_t ino) {
  return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 20) & (t->cap - 1);
}

static inline stored *stored_find(stored_table *t, uint64_t ino) {
  if (!t->count || !ino) return NULL;
  for (size_t i = stored_home(t, ino);; i = (i + 1) & (t->cap - 1)) {
    if (t->at[i].ino == ino) return &t->at[i];
    if (t->at[i].ino == 0) return NULL;
  }
}

static inline void stored_remove(stored_table *t, uint64_t ino) {
  stored *e = stored_find(t, ino);
  if (!e) return;
  size_t mask = t->cap - 1, hole = (size_t)(e - t->at);
  for (size_t j = (hole + 1) & mask; t->at[j].ino != 0; j = (j + 1) & mask) {
    size_t home = stored_home(t, t->at[j].ino);
    /* j may fill the hole unless its home lies cyclically in (hole, j] */
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      t->at[hole] = t->at[j];
      hole = j;
    }
  }
  t->at[hole].ino = 0;
  t->count--;
}

/* Inserts or updates; -1 when out of memory (the table is unchanged). */
static inline int stored_put(stored_table *t, uint64_t ino, uint32_t slot, uint32_t mode) {
  if (!ino) return -1;
  if ((t->count + 1) * 4 > t->cap * 3) {           /* keep the load at most 3/4 */
    stored_table grown = { calloc(t->cap ? t->cap * 2 : 64, sizeof(stored)), t->cap ? t->cap * 2 : 64, 0 };
    if (!grown.at) return -1;
    for (size_t i = 0; i < t->cap; i++) {
      if (!t->at[i].ino) continue;
      size_t j = stored_home(&grown, t->at[i].ino);
      while (grown.at[j].ino) j = (j + 1) & (grown.cap - 1);
      grown.at[j] = t->at[i];
      grown.count++;
    }
    free(t->at);
    *t = grown;
  }
  stored *e = stored_find(t, ino);
  if (!e) {
    size_t j = stored_home(t, ino);
    while (t->at[j].ino) j = (j + 1) & (t->cap - 1);
    e = &t->at[j];
    e->ino = ino;
    t->count++;
  }
  e->slot = slot;
  e->mode = mode;
  return 0;
}

/* Empties the table and gives its memory back. */
static inline void stored_clear(stored_table *t) {
  free(t->at);
  t->at = NULL;
  t->cap = t->count = 0;
}

#endif
