#!/usr/bin/env bash
# Vendor Apache ECharts (Apache-2.0) from the npm registry into the console package, with its licence.
# The Revenue and Learning pages load these files from the console itself: no CDN at run time (CSP 'self').
# Pinned version and tarball sha512 (the registry's dist.integrity); a tarball that does not match writes
# nothing. services/console/tests/test_reports.py checks the committed file is that release.
set -euo pipefail
VERSION="${ECHARTS_VERSION:-6.1.0}"
INTEGRITY="${ECHARTS_INTEGRITY:-sha512-q0yaFPggC9FUdsWH4blavRWFmxdrIodbkoKNAjJudAI6CA9gNPxHtV2RcZNEepZVlk4yvBYkOkbk6HIVpIyHZA==}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="$HERE/src/console/static/vendor/echarts"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
curl -fsSL --max-time 120 -o "$WORK/echarts.tgz" "https://registry.npmjs.org/echarts/-/echarts-$VERSION.tgz"
GOT="sha512-$(openssl dgst -sha512 -binary "$WORK/echarts.tgz" | base64 -w0)"
if [[ "$GOT" != "$INTEGRITY" ]]; then
  echo "echarts-$VERSION.tgz: integrity $GOT, expected $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$WORK/echarts.tgz" -C "$WORK" package/dist/echarts.min.js package/LICENSE package/NOTICE
mkdir -p "$TARGET"
cp "$WORK/package/dist/echarts.min.js" "$WORK/package/LICENSE" "$WORK/package/NOTICE" "$TARGET/"
echo "$VERSION $INTEGRITY" > "$TARGET/VERSION"
echo "vendored echarts $VERSION into $TARGET"
