#!/usr/bin/env bash
# Print the base image reference the location images should build FROM, making sure it exists
# locally. In order: BASE_IMAGE if already present; BASE_IMAGE pulled; the local stand-in
# LOCAL_BASE_IMAGE if already built; else build that stand-in with debootstrap (Debian bookworm
# minbase + python3.11, python3-venv, ca-certificates) and `docker import` it.
#
# The stand-in gets its own name instead of posing as the official image: nothing on a
# machine with registry access is shadowed, and `docker image inspect` tells which one a build
# used. Progress goes to stderr; stdout carries only the reference.
#
#   BASE_IMAGE        default python:3.11-slim-bookworm (the official slim Python image)
#   LOCAL_BASE_IMAGE  default data-platform/python-base:3.11-bookworm
#   DEBIAN_MIRROR     default http://deb.debian.org/debian
set -euo pipefail

base="${BASE_IMAGE:-python:3.11-slim-bookworm}"
local_base="${LOCAL_BASE_IMAGE:-data-platform/python-base:3.11-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm

say() { echo "==> $*" >&2; }
present() { docker image inspect "$1" >/dev/null 2>&1; }

if present "$base"; then
  echo "$base"
  exit 0
fi
say "base image $base is not present locally; trying to pull it"
if pulled="$(docker pull --quiet "$base" 2>&1)"; then
  echo "$base"
  exit 0
fi
say "pull failed: ${pulled##*$'\n'}"
if present "$local_base"; then
  say "cannot pull $base; using the local stand-in $local_base"
  echo "$local_base"
  exit 0
fi

say "cannot pull $base; building the stand-in $local_base with debootstrap ($suite, $mirror)"
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

rootfs="$(mktemp -d /tmp/python-base-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

started=$SECONDS
debootstrap --variant=minbase --include=python3.11,python3-venv,ca-certificates \
  "$suite" "$rootfs" "$mirror" >&2

# The same security and point-release updates the official images are rebuilt with.
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
say "applying $suite-updates and $suite-security"
chroot "$rootfs" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get upgrade -y -qq >&2
chroot "$rootfs" apt-get clean
# What a slim image leaves out: package lists, docs, man pages, logs, message translations
# (33 MB; the servers log in English).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/tmp/* "$rootfs"/root/.cache
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +

say "importing $rootfs as $local_base"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'LABEL org.opencontainers.image.title="python-base" org.opencontainers.image.description="Debian bookworm minbase + python3.11 (debootstrap stand-in for python:3.11-slim-bookworm)"' \
  --change 'CMD ["python3.11"]' \
  --message "debootstrap $suite minbase + python3.11 from $mirror" \
  - "$local_base" >/dev/null
say "built $local_base in $((SECONDS - started))s ($(docker image inspect --format '{{.Size}}' "$local_base" | awk '{printf "%.0f MB", $1 / 1e6}'))"
echo "$local_base"
