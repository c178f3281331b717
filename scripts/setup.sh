#!/usr/bin/env bash
# Installs what statsfs needs on a fresh Debian/Ubuntu machine, then builds it. Idempotent and quick when
# everything is already there, so `npm start` and `npm test` can both run it first (`--for-tests` adds what
# only the tests need, `--for-bench` what only `npm run bench` needs).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'statsfs setup: %s\n' "$*" >&2; }

need_pkgs=()
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)
pkg-config --exists fuse3 2>/dev/null || need_pkgs+=(libfuse3-dev pkg-config)
# The tests also scrape the daemon with a real Prometheus server (checking its output with promtool) and drive
# `statsfs top` in tmux.
if [ "${1:-}" = "--for-tests" ]; then
  { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || need_pkgs+=(prometheus)
  command -v prometheus-node-exporter >/dev/null 2>&1 || need_pkgs+=(prometheus-node-exporter)
  command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
  command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
  # `statsfs top` is tested in a real terminal
  command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)
fi
# `npm run bench` runs collectd's statsd plugin beside statsfs's StatsD receiver
if [ "${1:-}" = "--for-bench" ]; then
  [ -e /usr/lib/collectd/statsd.so ] || need_pkgs+=(collectd-core)
fi
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_pkgs[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    say "missing Debian packages: run 'sudo apt-get install ${need_pkgs[*]}' (or your distribution's equivalents), then run this again"
    exit 1
  fi
fi
if [ ! -e /dev/fuse ]; then
  say "warning: /dev/fuse is absent: mounting will fail (load the fuse module, or in a container pass --device /dev/fuse --cap-add SYS_ADMIN)"
fi

# Install when the lock file is newer than the installed tree (or there is none); it builds the addon too.
# `npm install` rather than `npm ci`: npm 11 leaves other platforms' optional packages (rollup's) out of
# the lock file and `npm ci` then calls the lock out of sync; install follows the lock all the same.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm install --no-audit --no-fund --loglevel=error
fi
if [ ! -f build/Release/statsfs_fuse.node ] || [ -n "$(find native binding.gyp -newer build/Release/statsfs_fuse.node 2>/dev/null)" ]; then
  say "building the FUSE binding"
  npm run --silent build:native -- --loglevel=error >/dev/null
fi
npx --no-install tsc -p tsconfig.json
