#!/usr/bin/env bash
# Collect everything needed to understand a failed deployment into one folder: every object
# and event of the namespace (get and describe), the logs of every container of every pod,
# current and previous, helm status and history of every release, the nodes, and
# `kind export logs`. Never prints or collects a Secret's values (`get secrets` lists names).
# Each collection is independent and bounded in time (a wedged API server must not eat the
# job): one that fails is recorded in SUMMARY.txt and the rest go on. The node's own logs come
# first: they are what explains a cluster that no longer answers.
#
#   infra/kind/diagnostics.sh OUT_DIR
#
# Environment: NAMESPACE (default data-platform), KUBE_CONTEXT (default: kubectl's current),
# KIND_CLUSTER (when set and kind is installed: `kind export logs` of that cluster),
# DIAGNOSTICS_IF_MISSING=1 (leave OUT_DIR as it is when it holds diagnostics already: the e2e
# driver collected there first). Otherwise what an earlier run wrote there is replaced.
set -uo pipefail

out="${1:?usage: diagnostics.sh OUT_DIR}"
namespace="${NAMESPACE:-data-platform}"
context="${KUBE_CONTEXT:-}"
cluster="${KIND_CLUSTER:-}"

summary="$out/SUMMARY.txt"
if [[ "${DIAGNOSTICS_IF_MISSING:-}" == 1 && -f "$summary" ]]; then
  echo "==> diagnostics already in $out"
  exit 0
fi
# Only what this script writes, never the folder itself (OUT_DIR may hold other files).
rm -rf "$out/logs" "$out/helm" "$out/kind-logs"
rm -f "$out"/{SUMMARY,kind-export,docker,nodes,describe-nodes,objects,events,describe,system-pods}.txt \
  "$out/objects.yaml"
mkdir -p "$out/logs" "$out/helm"
: >"$summary"

# bounded SECONDS COMMAND...: the command with a time limit where timeout(1) exists (GNU
# coreutils; gtimeout on macOS with Homebrew's coreutils), else as it is.
bounded() {
  local seconds="$1"
  shift
  if command -v timeout >/dev/null; then
    timeout "$seconds" "$@"
  elif command -v gtimeout >/dev/null; then
    gtimeout "$seconds" "$@"
  else
    "$@"
  fi
}

kube() {
  if [[ -n "$context" ]]; then
    kubectl --request-timeout=30s --context "$context" "$@"
  else
    kubectl --request-timeout=30s "$@"
  fi
}

# collect FILE COMMAND...: the command's stdout and stderr into FILE, its status into the summary.
collect() {
  local file="$1"
  shift
  if "$@" >"$out/$file" 2>&1; then
    echo "ok      $file" >>"$summary"
  else
    echo "failed  $file (exit $?): $*" >>"$summary"
  fi
}

objects="all,events,configmaps,secrets,serviceaccounts,roles,rolebindings,pvc,networkpolicies,jobs,cronjobs,poddisruptionbudgets"
if [[ -n "$cluster" ]] && command -v kind >/dev/null; then
  collect kind-export.txt bounded 300 kind export logs "$out/kind-logs" --name "$cluster"
fi
collect docker.txt bounded 60 docker info
collect nodes.txt kube get nodes -o wide
collect describe-nodes.txt kube describe nodes
collect objects.txt kube --namespace "$namespace" get "$objects" -o wide
collect objects.yaml kube --namespace "$namespace" get "${objects/secrets,/}" -o yaml
collect events.txt kube get events --all-namespaces --sort-by=.lastTimestamp
collect describe.txt kube --namespace "$namespace" describe \
  pods,deployments,replicasets,statefulsets,jobs,services,pvc,networkpolicies
collect system-pods.txt kube --namespace kube-system get pods -o wide

# Every container of every pod, init containers included; the previous instance where one
# restarted (kubectl says "previous terminated container not found" otherwise, recorded).
pods="$(kube --namespace "$namespace" get pods \
  -o jsonpath='{range .items[*]}{.metadata.name}{" "}{range .spec.initContainers[*]}{.name}{","}{end}{range .spec.containers[*]}{.name}{","}{end}{"\n"}{end}' 2>>"$summary")"
while read -r pod containers; do
  [[ -n "$pod" ]] || continue
  IFS=, read -r -a names <<<"$containers"
  for name in "${names[@]}"; do
    [[ -n "$name" ]] || continue
    collect "logs/$pod.$name.log" kube --namespace "$namespace" logs "$pod" -c "$name" --timestamps
    restarts="$(kube --namespace "$namespace" get pod "$pod" -o jsonpath="{.status.containerStatuses[?(@.name=='$name')].restartCount}{.status.initContainerStatuses[?(@.name=='$name')].restartCount}")"
    if [[ "${restarts:-0}" != 0 ]]; then
      collect "logs/$pod.$name.previous.log" \
        kube --namespace "$namespace" logs "$pod" -c "$name" --previous --timestamps
    fi
  done
done <<<"$pods"

helm_context=()
[[ -n "$context" ]] && helm_context=(--kube-context "$context")
releases="$(bounded 60 helm "${helm_context[@]}" --namespace "$namespace" list --all --short 2>>"$summary")"
for release in $releases; do
  collect "helm/$release.status.txt" bounded 60 helm "${helm_context[@]}" --namespace "$namespace" status "$release" --show-resources
  collect "helm/$release.history.txt" bounded 60 helm "${helm_context[@]}" --namespace "$namespace" history "$release"
done


echo "==> diagnostics in $out ($(grep -c '^ok' "$summary") collected, $(grep -c '^failed' "$summary") failed; see SUMMARY.txt)"
