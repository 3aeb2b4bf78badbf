#!/usr/bin/env bash
# Print `locations=<JSON list>` for $GITHUB_OUTPUT: the code locations whose image must be
# rebuilt for the changes since BASE (a commit). A change under locations/<name>/ touches that
# location only; a change to what every image is built from (the lock, the root pyproject, the
# image scripts, .dockerignore) touches all. No usable BASE (first push, force push): all.
set -euo pipefail

base="${1:-}"
# The locations in dg.toml order, their declarations checked.
names="$(python3 infra/devkit/src/platform_devkit/locations.py names)"
read -r -a all <<< "$names"

emit() {
  local IFS=,
  if [[ $# -eq 0 ]]; then
    echo 'locations=[]'
  else
    local joined="$*"
    printf 'locations=["%s"]\n' "${joined//,/\",\"}"
  fi
}

if [[ -z "$base" || "$base" =~ ^0+$ ]] || ! git cat-file -e "$base^{commit}" 2>/dev/null; then
  emit "${all[@]}"
  exit 0
fi

mapfile -t changed < <(git diff --name-only "$base" HEAD)
selected=()
for location in "${all[@]}"; do
  for path in "${changed[@]}"; do
    case "$path" in
      locations/"$location"/*|uv.lock|pyproject.toml|.dockerignore|infra/docker/*)
        selected+=("$location")
        break
        ;;
    esac
  done
done
emit "${selected[@]}"
