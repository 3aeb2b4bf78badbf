#!/usr/bin/env bash
# Build one code location's image from the repository root, tagged <registry>/<name>:<tag> and
# <registry>/<name>:latest (docs/images.md).
#
#   build-image.sh <location>            build it
#   build-image.sh --dry-run <location>  print what would be built and stop: `# dockerfile:`
#                                        the file used, `# build-arg: NAME=value` lines, then
#                                        that Dockerfile as it is built (no Docker or git needed)
#
# The Dockerfile: locations/<name>/Dockerfile when the location has one (it needs more than the
# template, e.g. system packages), else the shared template infra/docker/location.Dockerfile.
# The build arguments come from locations/<name>/pyproject.toml: LOCATION (the folder),
# PACKAGE ([project].name), MODULE ([tool.dg.project].root_module), DESCRIPTION
# ([project].description) and PREPARE_DEFS_STATE ([tool.platform.image].prepare_defs_state,
# default false). Docker expands no variables in an exec-form CMD, so @MODULE@ in the
# Dockerfile is replaced with the module before the build.
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
#   EXTRAS           optional extras of the location to install too ([project.optional-
#                    dependencies], space or comma separated; default none), e.g. `aws` for
#                    production's S3 compute logs (docs/images.md, "Extras"). An extra the
#                    location does not declare stops the build, naming it.
#   DOCKER_BUILD_ARGS  extra `docker build` arguments (e.g. --no-cache)
#   PYTHON           the Python (3.11 or later, for tomllib) that reads pyproject.toml
#                    (default python3)
set -euo pipefail

dry_run=false
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=true
  shift
fi
location="${1:?usage: build-image.sh [--dry-run] <location>}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/infra/docker"
folder="$root/locations/$location"
[[ -f "$folder/pyproject.toml" ]] || {
  echo "no location '$location': $folder/pyproject.toml does not exist" >&2
  exit 1
}
if [[ -f "$folder/Dockerfile" ]]; then
  dockerfile="$folder/Dockerfile"
else
  dockerfile="$here/location.Dockerfile"
fi

# package, module, prepare_defs_state, extras (space separated) and description, one a line.
settings="$("${PYTHON:-python3}" - "$folder/pyproject.toml" "${EXTRAS:-}" <<'EOF'
import re
import sys
import tomllib

path = sys.argv[1]
with open(path, "rb") as f:
    pyproject = tomllib.load(f)
project = pyproject.get("project", {})
tool = pyproject.get("tool", {})
package = project.get("name")
module = tool.get("dg", {}).get("project", {}).get("root_module")
prepare = tool.get("platform", {}).get("image", {}).get("prepare_defs_state", False)
description = " ".join(str(project.get("description", "")).split())
extras = list(dict.fromkeys(sys.argv[2].replace(",", " ").split()))
declared = sorted(project.get("optional-dependencies", {}))
errors = []
unknown = [extra for extra in extras if extra not in declared]
if unknown:
    errors.append(
        f"EXTRAS names {unknown}, not in [project.optional-dependencies] "
        f"(declared: {declared or 'none'})"
    )
if not package:
    errors.append("[project].name is missing")
if not module or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module):
    errors.append(f"[tool.dg.project].root_module is missing or not a module name: {module!r}")
if not isinstance(prepare, bool):
    errors.append(f"[tool.platform.image].prepare_defs_state must be true or false: {prepare!r}")
if errors:
    sys.exit(f"{path}: " + "; ".join(errors))
print(package, module, "true" if prepare else "false", " ".join(extras), description, sep="\n")
EOF
)"
mapfile -t fields <<<"$settings"
package="${fields[0]}"
module="${fields[1]}"
prepare_defs_state="${fields[2]}"
extras="${fields[3]:-}"
description="${fields[4]:-}"
rendered="$(sed "s/@MODULE@/$module/g" "$dockerfile")"
build_args=(
  "LOCATION=$location"
  "PACKAGE=$package"
  "MODULE=$module"
  "DESCRIPTION=${description:-Dagster code location $location}"
  "PREPARE_DEFS_STATE=$prepare_defs_state"
  "EXTRAS=$extras"
)

if [[ "$dry_run" == true ]]; then
  echo "# dockerfile: ${dockerfile#"$root"/}"
  printf '# build-arg: %s\n' "${build_args[@]}"
  printf '%s\n' "$rendered"
  exit 0
fi

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
build_arg_flags=()
for arg in "${build_args[@]}"; do
  build_arg_flags+=(--build-arg "$arg")
done

echo "==> building $image:$tag from ${dockerfile#"$root"/} (base $base, extras: ${extras:-none}, ${#ca_files[@]} extra CA file(s))"
started=$SECONDS
# The legacy builder unless told otherwise: it is what Debian's docker.io has, so the
# Dockerfiles are kept to what it understands. The Dockerfile, with its CMD filled in, comes
# on stdin; the context is the repository root.
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build \
  --file - \
  --build-arg "BASE_IMAGE=$base" \
  --build-arg "VCS_REF=$revision" \
  "${build_arg_flags[@]}" \
  --tag "$image:$tag" \
  --tag "$image:latest" \
  "${extra_args[@]}" \
  "$root" <<<"$rendered"
size="$(docker image inspect --format '{{.Size}}' "$image:$tag")"
echo "==> built $image:$tag and :latest in $((SECONDS - started))s, $((size / 1000000)) MB"
