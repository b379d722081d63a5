#!/usr/bin/env bash
# Install every tool `make test` needs that is not a Python package, into .tools/ (cached; a second run
# only checks version stamps and takes well under a second):
#
#   .tools/bin/helm               helm v3 (go install), built to assume Kubernetes 1.33
#   .tools/bin/kubeconform        kubeconform (go install)
#   .tools/bin/bigquery-emulator  goccy/bigquery-emulator (tools/install_bigquery_emulator.sh, ~3 min cold)
#   .tools/node/node_modules      the CRD validators of tools/crd-validation/package-lock.json (npm ci)
#   /usr/bin/chromium             Debian's chromium (tools/install_chromium.sh; needs apt-get as root)
#
# Everything comes from the package registries by name (Go module proxy, npm, Debian). A tool that cannot
# be installed is an error with CI=true; elsewhere it is reported and the tests that need it skip.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BIN="$ROOT/.tools/bin"
mkdir -p "$BIN"

HELM_VERSION="v3.21.4"
KUBECONFORM_VERSION="v0.7.0"
KUBE_MINOR=33   # the Kubernetes minor the chart is rendered for (tests/deploy: KUBE_VERSION)
CI="${CI:-}"
missing=()

stamped() { # file version: true when file exists with a matching .version stamp
    [[ -x "$1" && -f "$1.version" && "$(cat "$1.version")" == "$2" ]]
}
note_missing() {
    missing+=("$1")
    echo "install-test-tools: could not install $1" >&2
}

go_tool() { # name module version [ldflags]
    local name=$1 module=$2 version=$3 ldflags=${4:-}
    stamped "$BIN/$name" "$version" && return 0
    if ! command -v go >/dev/null; then note_missing "$name (go is not installed)"; return 0; fi
    local start=$SECONDS
    echo "install-test-tools: building $name $version (go install)"
    if GOBIN="$BIN" GOFLAGS=-mod=mod timeout 900 go install -ldflags "$ldflags" "$module@$version"; then
        echo "$version" >"$BIN/$name.version"
        echo "install-test-tools: $name $version in $((SECONDS - start))s"
    else
        note_missing "$name"
    fi
}

# helm built by `go install` lacks the release ldflags and would assume Kubernetes 1.20.
go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$KUBE_MINOR -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$KUBE_MINOR"
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

if command -v go >/dev/null; then
    # A cold build is ~3 min on a quiet 2-core machine; allow for a busy one.
    BQ_EMULATOR_BIN="$BIN" BQ_EMULATOR_BUILD_TIMEOUT="${BQ_EMULATOR_BUILD_TIMEOUT:-1800}" \
        bash tools/install_bigquery_emulator.sh || note_missing bigquery-emulator
else
    note_missing "bigquery-emulator (go is not installed)"
fi

# CRD validators: npm ci from the committed lock file (exact versions, integrity-checked).
NODE_DIR="$ROOT/.tools/node"
LOCK="$ROOT/tools/crd-validation/package-lock.json"
if [[ -f "$NODE_DIR/package-lock.json" ]] && cmp -s "$LOCK" "$NODE_DIR/package-lock.json" \
    && [[ -d "$NODE_DIR/node_modules" ]]; then
    :
elif command -v npm >/dev/null; then
    mkdir -p "$NODE_DIR"
    cp tools/crd-validation/package.json "$LOCK" "$NODE_DIR/"
    echo "install-test-tools: npm ci (CRD validators)"
    (cd "$NODE_DIR" && timeout 600 npm ci --no-audit --no-fund --silent) || note_missing "CRD validators (npm ci)"
else
    note_missing "CRD validators (npm is not installed)"
fi

# Chromium: Debian's package, where this platform has apt-get and we are root (or have sudo).
if [[ -x /usr/bin/chromium ]]; then
    :
elif command -v apt-get >/dev/null && { [[ $(id -u) -eq 0 ]] || command -v sudo >/dev/null; }; then
    bash tools/install_chromium.sh || note_missing chromium
else
    note_missing "chromium (no apt-get here: install Chromium at /usr/bin/chromium)"
fi

if ((${#missing[@]})); then
    if [[ "$CI" == "true" ]]; then
        echo "install-test-tools: FAILED (CI=true): ${missing[*]}" >&2
        exit 1
    fi
    echo "install-test-tools: the tests that need these will skip: ${missing[*]}" >&2
fi
exit 0
