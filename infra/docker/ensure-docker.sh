#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`. When none does (the build machines have no
# engine running, and no systemd to start one), install Debian's docker.io if dockerd is
# missing and start dockerd in the background. Idempotent: a running engine is left alone.
#
#   DOCKERD_LOG      where dockerd logs (default /tmp/dockerd.log)
#   DOCKERD_TIMEOUT  seconds to wait for the engine (default 120)
#   DOCKERD_FLAGS    extra dockerd flags; when unset the defaults are tried first, then
#                    --iptables=false (sandboxes without netfilter), then the vfs storage driver
#                    (kernels or filesystems without overlayfs)
set -euo pipefail

log="${DOCKERD_LOG:-/tmp/dockerd.log}"
timeout="${DOCKERD_TIMEOUT:-120}"

say() { echo "==> $*" >&2; }

if docker info >/dev/null 2>&1; then
  say "Docker engine is up ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}'))"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  say "no Docker engine answers and starting one needs root: start dockerd, or run as root"
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  say "installing Debian's docker.io (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

# A pid file left by an engine that is gone (a machine restored from a snapshot, a killed
# container) makes dockerd refuse to start ("pid file found"). Remove a pid file only when
# the process it names is not alive under the expected name; a live engine is never touched.
clear_stale_pidfile() {
  local file="$1" name="$2" pid
  [[ -f "$file" ]] || return 0
  pid="$(tr -dc '0-9' <"$file")"
  if [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]; then
    say "$name (pid $pid) is running but does not answer yet; waiting up to ${timeout}s"
    local waited=0
    until docker info >/dev/null 2>&1; do
      if ((waited >= timeout)); then
        say "$name (pid $pid) did not answer within ${timeout}s; stop it or see $log"
        exit 1
      fi
      sleep 1
      waited=$((waited + 1))
    done
    say "Docker engine is up ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}'))"
    exit 0
  fi
  say "removing stale pid file $file (pid ${pid:-none} is not a running $name)"
  rm -f "$file"
}
clear_stale_pidfile /var/run/docker.pid dockerd
clear_stale_pidfile /var/run/docker/containerd/containerd.pid containerd

# Start dockerd with one set of flags; succeed once `docker info` answers, fail if it exits.
start_dockerd() {
  local flags=("$@")
  say "starting dockerd ${flags[*]:-(default flags)}, log: $log"
  # setsid: the engine outlives the make or CI step that started it.
  setsid dockerd "${flags[@]}" >>"$log" 2>&1 </dev/null &
  local pid=$!
  local waited=0
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "dockerd exited; last lines of $log:"
      tail -n 5 "$log" >&2
      return 1
    fi
    if ((waited >= timeout)); then
      say "dockerd did not answer within ${timeout}s (pid $pid still running; see $log)"
      exit 1
    fi
    if ((waited % 10 == 0)); then
      say "waiting for the Docker engine (${waited}s)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "Docker engine is up after ${waited}s ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}'))"
}

if [[ -n "${DOCKERD_FLAGS:-}" ]]; then
  read -r -a flags <<<"$DOCKERD_FLAGS"
  start_dockerd "${flags[@]}"
  exit 0
fi

start_dockerd && exit 0
start_dockerd --iptables=false && exit 0
start_dockerd --iptables=false --storage-driver=vfs && exit 0
say "dockerd would not start with any flag set; see $log"
exit 1
