/*
 * The JS thread's side of the queue: each request handed to JS is held in a
 * slot until answered, under an id (index and generation) that a late or
 * duplicate reply cannot mistake for another request; each event is passed to
 * the dispatch function as (event, id, arguments...), the arguments pushed by
 * the encoder of its kind (contract.h lists them for TypeScript).
 */
#include "statsfs.h"

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

/* The slot index of the request `id` if it is still held, else -1. */
static int64_t slot_of(const session *s, double id) {
  if (!(id >= 0 && id < 4503599627370496.0)) return -1;
  uint64_t v = (uint64_t)id;
  uint32_t idx = (uint32_t)(v % SLOT_SPAN), gen = (uint32_t)(v / SLOT_SPAN);
  if (idx >= s->nslots || !s->slots[idx] || s->gens[idx] != gen) return -1;
  return idx;
}

/* The request `id`, still held; NULL if it was answered or never was. */
item *slot_peek(session *s, double id) {
  int64_t idx = slot_of(s, id);
  return idx < 0 ? NULL : s->slots[idx];
}

/* Takes the request `id` out of its slot to answer it; NULL if it was answered or never was. */
item *slot_take(session *s, double id) {
  int64_t idx = slot_of(s, id);
  if (idx < 0) return NULL;
  item *it = s->slots[idx];
  s->slots[idx] = NULL;
  s->gens[idx] = (s->gens[idx] + 1) & GEN_MASK;
  s->freelist[s->nfree++] = (uint32_t)idx;
  return it;
}

/* ------------------------------------------------------------------ */
/* Events: each kind's arguments after (event, id), as STATSFS_EVENTS */
/* lists them; an encoder returns how many it pushed.                  */

#define MAX_EVENT_ARGS 6
typedef size_t (*encoder)(napi_env env, const item *it, napi_value *arg);

static size_t enc_LOOKUP(napi_env env, const item *it, napi_value *arg) {
  arg[0] = num(env, (double)it->ino);
  napi_create_string_utf8(env, it->data, NAPI_AUTO_LENGTH, &arg[1]);
  return 2;
}

static size_t enc_GETATTR(napi_env env, const item *it, napi_value *arg) {
  arg[0] = num(env, (double)it->ino);
  return 1;
}

static size_t enc_SETATTR(napi_env env, const item *it, napi_value *arg) {
  arg[0] = num(env, (double)it->ino);
  arg[1] = num(env, it->u.set.valid);
  arg[2] = num(env, (double)it->u.set.size);
  arg[3] = num(env, it->u.set.mode);
  arg[4] = num(env, it->u.set.uid);
  arg[5] = num(env, it->u.set.gid);
  return 6;
}

static size_t enc_OPENDIR(napi_env env, const item *it, napi_value *arg) {
  return enc_GETATTR(env, it, arg);
}

static size_t enc_OPEN(napi_env env, const item *it, napi_value *arg) {
  arg[0] = num(env, (double)it->ino);
  arg[1] = num(env, it->u.flags);
  arg[2] = num(env, it->uid);
  return 3;
}

static size_t enc_WRITE(napi_env env, const item *it, napi_value *arg) {
  arg[0] = num(env, (double)it->ino);
  napi_create_buffer_copy(env, it->len, it->data, NULL, &arg[1]);
  arg[2] = num(env, (double)it->u.off);
  /* the handle cannot be released while one of its writes is unanswered */
  arg[3] = num(env, (double)((snapshot *)(uintptr_t)it->fi.fh)->written);
  return 4;
}

static size_t enc_FORGET(napi_env env, const item *it, napi_value *arg) {
  void *mem;
  napi_value ab;
  napi_create_arraybuffer(env, it->len, &mem, &ab);
  memcpy(mem, it->data, it->len);
  napi_create_typedarray(env, napi_float64_array, it->u.count * 2, ab, 0, &arg[0]);
  return 1;
}

static size_t enc_ENDED(napi_env env, const item *it, napi_value *arg) {
  return 0;
}

static size_t enc_LOG(napi_env env, const item *it, napi_value *arg) {
  arg[0] = num(env, it->u.level);
  napi_create_string_utf8(env, it->data, it->len, &arg[1]);
  return 2;
}

static size_t enc_SENT(napi_env env, const item *it, napi_value *arg) {
  arg[0] = num(env, it->u.mark);
  return 1;
}

static const encoder encoders[EV_COUNT] = {
#define X(id, name, args) [EV_##id] = enc_##id,
  STATSFS_EVENTS(X)
#undef X
};

static void dispatch_item(session *s, napi_value fn, item *it) {
  napi_env env = s->env;
  napi_value argv[2 + MAX_EVENT_ARGS], undef, r;
  double id = 0;
  /* A request may be answered, hence freed, inside the call: remember. */
  const int needs_reply = it->req != NULL;
  if (needs_reply && slot_put(s, it, &id) != 0) { fail_item(s, it, ENOMEM); return; }
  napi_get_undefined(env, &undef);
  argv[0] = num(env, it->ev);
  argv[1] = num(env, id);
  size_t argc = 2 + encoders[it->ev](env, it, argv + 2);
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

void on_async(uv_async_t *h) {
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
