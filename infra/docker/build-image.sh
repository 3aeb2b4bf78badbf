#!/usr/bin/env bash
# Build one code location's image from the repository root: locations/<name>/Dockerfile,
# tagged <registry>/<name>:<tag> and <registry>/<name>:latest (docs/images.md).
#
#   build-image.sh <location>
#
#   REGISTRY         default data-platform
#   VCS_REF          the commit the image is labelled with (default HEAD)
#   IMAGE_TAG        default the git short sha of VCS_REF
#   BASE_IMAGE       default python:3.11-slim-bookworm; when it is neither present nor
#                    pullable, build-base-image.sh provides a debootstrap stand-in
#   EXTRA_CA_BUNDLE  PEM files (space separated) the build trusts on top of the base image's
#                    CAs, for TLS-intercepting networks. Unset: the host's locally added CAs
#                    (/usr/local/share/ca-certificates/*.crt); empty: none. Never committed:
#                    they are staged in the git-ignored infra/docker/ca/ and trusted by the
#                    builder stage only, never by the final image.
#   DOCKER_BUILD_ARGS  extra `docker build` arguments (e.g. --no-cache)
set -euo pipefail

location="${1:?usage: build-image.sh <location>}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/infra/docker"
dockerfile="$root/locations/$location/Dockerfile"
[[ -f "$dockerfile" ]] || {
  echo "no Dockerfile for location '$location' ($dockerfile)" >&2
  exit 1
}

registry="${REGISTRY:-data-platform}"
revision="${VCS_REF:-$(git -C "$root" rev-parse HEAD)}"
tag="${IMAGE_TAG:-$(git -C "$root" rev-parse --short "$revision")}"
image="$registry/$location"

# Stage the extra CAs under one name pattern the Dockerfiles pick up (*.crt).
find "$here/ca" -mindepth 1 -not -name .gitignore -delete
if [[ -z "${EXTRA_CA_BUNDLE+set}" ]]; then
  shopt -s nullglob
  ca_files=(/usr/local/share/ca-certificates/*.crt)
  shopt -u nullglob
else
  read -r -a ca_files <<<"$EXTRA_CA_BUNDLE"
fi
for i in "${!ca_files[@]}"; do
  cp "${ca_files[$i]}" "$here/ca/extra-$i.crt"
done

base="$(BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim-bookworm}" "$here/build-base-image.sh")"
read -r -a extra_args <<<"${DOCKER_BUILD_ARGS:-}"

echo "==> building $image:$tag (base $base, ${#ca_files[@]} extra CA file(s))"
started=$SECONDS
# The legacy builder unless told otherwise: it is what Debian's docker.io has, so the
# Dockerfiles are kept to what it understands.
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build \
  --file "$dockerfile" \
  --build-arg "BASE_IMAGE=$base" \
  --build-arg "VCS_REF=$revision" \
  --tag "$image:$tag" \
  --tag "$image:latest" \
  "${extra_args[@]}" \
  "$root"
size="$(docker image inspect --format '{{.Size}}' "$image:$tag")"
echo "==> built $image:$tag and :latest in $((SECONDS - started))s, $((size / 1000000)) MB"
