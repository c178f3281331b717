/*
 * Checks native/stored_table.h against a reference model: random registrations, updates and forgets over
 * a small key space (so that probe runs collide, wrap around the end and get shifted back), with every key
 * looked up after each batch. Built and run by test/native-table.test.ts (gcc with ASan and UBSan).
 * Prints "ok <operations> <largest capacity>" and exits 0, or says what differed and exits 1.
 */
#include <stdio.h>
#include <string.h>
#include "../../native/stored_table.h"

#define KEYS 6000

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {  /* xorshift64 */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int check(stored_table *t, const uint32_t *model, const char *when, long op) {
  size_t live = 0;
  for (uint64_t k = 1; k <= KEYS; k++) {
    stored *e = stored_find(t, k);
    if (model[k] && (!e || e->slot != model[k] || e->mode != (model[k] ^ 0x5a5a))) {
      printf("after op %ld (%s): key %llu should map to slot %u, found %s\n", op, when, (unsigned long long)k,
             model[k], e ? "another slot" : "nothing");
      return 1;
    }
    if (!model[k] && e) {
      printf("after op %ld (%s): key %llu was removed but is still found\n", op, when, (unsigned long long)k);
      return 1;
    }
    live += model[k] != 0;
  }
  if (live != t->count) {
    printf("after op %ld (%s): count %zu, expected %zu\n", op, when, t->count, live);
    return 1;
  }
  return 0;
}

int main(void) {
  static uint32_t model[KEYS + 1];
  stored_table t = { NULL, 0, 0 };
  setvbuf(stdout, NULL, _IONBF, 0);
  size_t largest = 0;
  long op = 0;
  for (int round = 0; round < 400; round++) {
    /* phases fill up and drain, so the load sweeps from empty to the 3/4 limit */
    int filling = (round / 20) % 2 == 0;
    for (int i = 0; i < 2000; i++, op++) {
      uint64_t key;
      /* keys from a narrow window part of the time: dense, sequential inode numbers, as the adapter makes */
      if (next() % 2) key = 1 + (next() % KEYS);
      else key = 1 + ((uint64_t)round * 37 + next() % 64) % KEYS;
      if ((next() % 100) < (filling ? 70u : 30u)) {
        uint32_t slot = (uint32_t)(next() % 1000000) + 1;
        if (stored_put(&t, key, slot, slot ^ 0x5a5a) != 0) { puts("out of memory"); return 1; }
        model[key] = slot;
      } else {
        stored_remove(&t, key);
        model[key] = 0;
      }
    }
    if (t.cap > largest) largest = t.cap;
    if (check(&t, model, filling ? "filling" : "draining", op)) {
      stored_clear(&t);
      return 1;
    }
  }
  stored_remove(&t, 0);
  if (stored_find(&t, 0) || stored_put(&t, 0, 1, 1) != -1) { puts("key 0 must never be stored"); return 1; }
  stored_clear(&t);
  memset(model, 0, sizeof model);
  if (check(&t, model, "clear", op)) return 1;
  printf("ok %ld %zu\n", op, largest);
  return 0;
}
