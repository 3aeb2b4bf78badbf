#!/usr/bin/env bash
# Create the platform's Secrets with random credentials, for kind and development clusters.
# Production creates the same Secrets from a secret manager (charts/platform externalSecrets);
# docs/deploy.md lists names and keys. Values are generated here, go to the cluster through
# kubectl's stdin and are never printed or passed on a command line.
#
#   infra/kind/secrets.sh                  create missing Secrets, add missing keys, keep the rest
#   infra/kind/secrets.sh --rotate NAME    also generate new passwords for Secret NAME (repeatable)
#   infra/kind/secrets.sh --list           print each Secret and its keys (no cluster needed)
#
# Environment: NAMESPACE (default data-platform), KUBE_CONTEXT (default: kubectl's current).
# Alert webhooks, written (replaced) as key ALERT_WEBHOOK_URL into a location's Secret, where its
# code server reads it to post alerts on failed runs and checks: <LOCATION>_ALERT_WEBHOOK_URL
# (the location's name in upper case, e.g. INGESTION_ALERT_WEBHOOK_URL) for that team's own,
# else ALERT_WEBHOOK_URL for every team without one. Neither set: the Secret is left as it is
# (no key: no alerts). Restart the code servers to apply a change. URLs are never printed.
set -euo pipefail

NAMESPACE="${NAMESPACE:-data-platform}"
KUBE_CONTEXT="${KUBE_CONTEXT:-}"

# name|KEY=value ... ; the value "random" means a generated password. The platform's own
# Secrets are listed here; each location's (its warehouse role, its declared extra keys, the
# outside readers of its schemas) comes from its declaration ([tool.platform] in
# locations/<name>/pyproject.toml), through platform_devkit/locations.py (Python 3.11+ only).
SECRETS=(
  "platform-postgres-admin|PGUSER=postgres PGPASSWORD=random"
  "dagster-postgresql-secret|postgresql-password=random"
)
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if ! declared="$(python3 "$repo/infra/devkit/src/platform_devkit/locations.py" secrets)"; then
  echo "secrets.sh: the locations' declarations could not be read (above)" >&2
  exit 1
fi
mapfile -t -O "${#SECRETS[@]}" SECRETS <<< "$declared"

kube() {
  if [[ -n "$KUBE_CONTEXT" ]]; then
    kubectl --context "$KUBE_CONTEXT" --namespace "$NAMESPACE" "$@"
  else
    kubectl --namespace "$NAMESPACE" "$@"
  fi
}

# KEY=value lines on stdout, passwords generated (48 hex characters: safe in URLs and shells).
env_lines() {
  local pair key value
  for pair in "$@"; do
    key="${pair%%=*}"
    value="${pair#*=}"
    if [[ "$value" == random ]]; then
      value="$(openssl rand -hex 24)"
    fi
    printf '%s=%s\n' "$key" "$value"
  done
}

# Key names only: the values never leave the cluster.
existing_keys() {
  # shellcheck disable=SC2016  # a kubectl go-template, not shell expansion
  kube get secret "$1" -o go-template='{{range $key, $value := .data}}{{$key}}{{"\n"}}{{end}}'
}

apply_secret() {
  local name="$1"
  shift
  kube create secret generic "$name" --from-env-file=<(env_lines "$@") --dry-run=client -o yaml \
    | kube apply -f - >/dev/null
}

# Adds keys to an existing Secret through a private patch file, keeping the other keys.
add_keys() {
  local name="$1" key value first=1
  shift
  {
    printf '{"stringData":{'
    while IFS='=' read -r key value; do
      [[ $first -eq 1 ]] || printf ','
      first=0
      printf '"%s":"%s"' "$key" "$value"
    done < <(env_lines "$@")
    printf '}}'
  } > "$patch"
  kube patch secret "$name" --type merge --patch-file "$patch" >/dev/null
}

list=0
rotate=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --list) list=1 ;;
    --rotate) rotate+=("${2:?--rotate needs a Secret name}"); shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "secrets.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [[ $list -eq 1 ]]; then
  for entry in "${SECRETS[@]}"; do
    read -r -a pairs <<< "${entry#*|}"
    printf '%s' "${entry%%|*}"
    printf ' %s' "${pairs[@]%%=*}"
    printf '\n'
  done
  exit 0
fi

# Each location's Secret and the variable of its own webhook (`<secret> <VARIABLE>` lines).
if ! team_secrets="$(python3 "$repo/infra/devkit/src/platform_devkit/locations.py" team-secrets)"; then
  echo "secrets.sh: the locations' declarations could not be read (above)" >&2
  exit 1
fi
# A URL goes into a JSON patch and a Secret: http(s), no white space, quotes or backslashes.
# Every one given is checked before anything changes; the message names the variable only.
webhook_vars=(ALERT_WEBHOOK_URL)
while read -r _ variable; do
  webhook_vars+=("$variable")
done <<< "$team_secrets"
for variable in "${webhook_vars[@]}"; do
  url="${!variable:-}"
  if [[ -n "$url" && ! "$url" =~ ^https?://[^[:space:]\"\\]+$ ]]; then
    echo "secrets.sh: $variable is not an http(s) URL without spaces or quotes" >&2
    exit 2
  fi
done

if ! kube get namespace "$NAMESPACE" >/dev/null 2>&1; then
  echo "secrets.sh: namespace $NAMESPACE does not exist (make secrets or make deploy creates it)" >&2
  exit 1
fi
patch="$(mktemp)"
chmod 600 "$patch"
trap 'rm -f "$patch"' EXIT

for entry in "${SECRETS[@]}"; do
  name="${entry%%|*}"
  read -r -a pairs <<< "${entry#*|}"
  if [[ " ${rotate[*]} " == *" $name "* ]]; then
    if [[ "$name" == platform-postgres-admin ]]; then
      echo "==> $name: rotating; the in-cluster server keeps the password it was initialised with" >&2
    fi
    apply_secret "$name" "${pairs[@]}"
    echo "==> $name: new passwords generated (make deploy applies them, then restart the pods)"
  elif ! kube get secret "$name" >/dev/null 2>&1; then
    apply_secret "$name" "${pairs[@]}"
    echo "==> $name: created (${pairs[*]%%=*})"
  else
    have="$(existing_keys "$name")"
    missing=()
    for pair in "${pairs[@]}"; do
      grep -qxF "${pair%%=*}" <<< "$have" || missing+=("$pair")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
      echo "==> $name: exists, kept"
    else
      add_keys "$name" "${missing[@]}"
      echo "==> $name: exists, added ${missing[*]%%=*}"
    fi
  fi
done
while read -r name variable; do
  if [[ -n "${!variable:-}" ]]; then
    add_keys "$name" "ALERT_WEBHOOK_URL=${!variable}"
    echo "==> $name: ALERT_WEBHOOK_URL set from $variable"
  elif [[ -n "${ALERT_WEBHOOK_URL:-}" ]]; then
    add_keys "$name" "ALERT_WEBHOOK_URL=$ALERT_WEBHOOK_URL"
    echo "==> $name: ALERT_WEBHOOK_URL set from ALERT_WEBHOOK_URL"
  fi
done <<< "$team_secrets"
echo "==> Secrets in namespace $NAMESPACE are in place (values not shown)"
