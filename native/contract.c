/*
 * The `contract` object init() exports: every list of contract.h, by name,
 * so that TypeScript reads the numbers instead of copying them, and checks
 * the names against its own (src/fs/native-contract.ts) when it loads the
 * binding.
 */
#include "statsfs.h"

static napi_value object(napi_env env) {
  napi_value o;
  napi_create_object(env, &o);
  return o;
}

static void set_num(napi_env env, napi_value o, const char *name, double v) {
  napi_set_named_property(env, o, name, num(env, v));
}

static napi_value string(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

/* ["lookup", "forget", ...]: the request kinds in the statistics' order */
static napi_value ops(napi_env env) {
  static const char *const names[K_COUNT] = {
#define X(id, name) name,
    STATSFS_OPS(X)
#undef X
  };
  napi_value a;
  napi_create_array_with_length(env, K_COUNT, &a);
  for (uint32_t i = 0; i < K_COUNT; i++) napi_set_element(env, a, i, string(env, names[i]));
  return a;
}

/* { length, requests, errors, bytesRead, ... }: where each statistic starts */
static napi_value stats(napi_env env) {
  napi_value o = object(env);
  set_num(env, o, "length", ST_COUNT);
  set_num(env, o, "requests", ST_REQUESTS);
  set_num(env, o, "errors", ST_ERRORS);
#define X(id, name) set_num(env, o, name, ST_##id);
  STATSFS_GAUGES(X)
#undef X
  return o;
}

/* { lookup: { code, args: "parent:number name:string" }, ... } */
static napi_value events(napi_env env) {
  napi_value o = object(env), e;
#define X(id, name, args)                                                      \
  e = object(env);                                                             \
  set_num(env, e, "code", EV_##id);                                            \
  napi_set_named_property(env, e, "args", string(env, args));                  \
  napi_set_named_property(env, o, name, e);
  STATSFS_EVENTS(X)
#undef X
  set_num(env, o, "length", EV_COUNT);
  return o;
}

static napi_value mount_flags(napi_env env) {
  napi_value o = object(env);
#define X(id, name, bit) set_num(env, o, name, MF_##id);
  STATSFS_MOUNT_FLAGS(X)
#undef X
  return o;
}

/* { length, <name>: index, ... } for a list whose enum numbers its entries in order from 0 */
static napi_value indices(napi_env env, const char *const *names, uint32_t n) {
  napi_value o = object(env);
  set_num(env, o, "length", n);
  for (uint32_t i = 0; i < n; i++) set_num(env, o, names[i], i);
  return o;
}

#define NAME(id, name) name,
/* the attributes in the Float64Array of replyEntry, replyAttr and serveStored */
static const char *const attr_names[A_COUNT] = { STATSFS_ATTR(NAME) };
/* replyOpendir's meta, and the values of its `cache` field */
static const char *const dir_meta_names[DM_COUNT] = { STATSFS_DIR_META(NAME) };
static const char *const dir_cache_names[DIR_CACHE_COUNT] = { STATSFS_DIR_CACHE(NAME) };
#undef NAME

static napi_value setattr_bits(napi_env env) {
  napi_value o = object(env);
#define X(name, bit) set_num(env, o, name, bit);
  STATSFS_SETATTR(X)
#undef X
  return o;
}

static napi_value arena(napi_env env) {
  napi_value o = object(env);
#define X(id, name, v) set_num(env, o, name, ARENA_##id);
  STATSFS_ARENA(X)
#undef X
  return o;
}

napi_value contract_object(napi_env env) {
  napi_value c = object(env);
  napi_set_named_property(env, c, "ops", ops(env));
  napi_set_named_property(env, c, "stats", stats(env));
  napi_set_named_property(env, c, "events", events(env));
  napi_set_named_property(env, c, "mountFlags", mount_flags(env));
  napi_set_named_property(env, c, "attr", indices(env, attr_names, A_COUNT));
  napi_set_named_property(env, c, "dirMeta", indices(env, dir_meta_names, DM_COUNT));
  napi_set_named_property(env, c, "dirCache", indices(env, dir_cache_names, DIR_CACHE_COUNT));
  napi_set_named_property(env, c, "setattr", setattr_bits(env));
  napi_set_named_property(env, c, "arena", arena(env));
  return c;
}
