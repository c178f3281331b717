{
  "targets": [
    {
      "target_name": "statsfs_fuse",
      "sources": ["native/session.c", "native/ops.c", "native/dispatch.c", "native/replies.c", "native/napi.c", "native/contract.c", "native/statsd_recv.c"],
      "defines": ["NAPI_VERSION=8", "FUSE_USE_VERSION=312", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "<!@(pkg-config --cflags fuse3)"],
      "cflags_c": ["-std=gnu11"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
