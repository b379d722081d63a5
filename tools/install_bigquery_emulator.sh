#!/usr/bin/env bash
# Build goccy/bigquery-emulator (pure Go) into ${BQ_EMULATOR_BIN:-$HOME/.cache/coursebridge/bin}.
# Idempotent: does nothing when the binary of this version is already there. Bounded in time
# (BQ_EMULATOR_BUILD_TIMEOUT seconds, default 900; measured here: about 3 minutes on a cold cache).
# `go install ...@v0.8.1` fails on this proxy (it reads the module's version list, which answers 403),
# so the exact version is downloaded and built from the module cache with its own go.sum.
set -euo pipefail
VERSION="${BQ_EMULATOR_VERSION:-v0.8.1}"
BIN_DIR="${BQ_EMULATOR_BIN:-$HOME/.cache/coursebridge/bin}"
TARGET="$BIN_DIR/bigquery-emulator"
STAMP="$TARGET.version"
if [[ -x "$TARGET" && -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" ]]; then
  echo "bigquery-emulator $VERSION already at $TARGET"
  exit 0
fi
command -v go >/dev/null || { echo "go is not installed" >&2; exit 1; }
mkdir -p "$BIN_DIR"
MODULE="github.com/goccy/bigquery-emulator"
start=$(date +%s)
timeout "${BQ_EMULATOR_BUILD_TIMEOUT:-900}" bash -c "
  set -euo pipefail
  dir=\$(go mod download -json '$MODULE@$VERSION' | sed -n 's/.*\"Dir\": \"\\(.*\\)\",/\\1/p')
  cd \"\$dir\"
  go build -o '$TARGET.tmp' ./cmd/bigquery-emulator
"
mv "$TARGET.tmp" "$TARGET"
echo "$VERSION" > "$STAMP"
echo "built bigquery-emulator $VERSION at $TARGET in $(( $(date +%s) - start ))s"
