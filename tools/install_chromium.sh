#!/usr/bin/env bash
# Install Debian's chromium for the console's browser tests (driven by python playwright with
# executable_path=/usr/bin/chromium). Idempotent: nothing to do when it is already there.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || true)"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
timeout "${CHROMIUM_INSTALL_TIMEOUT:-900}" $SUDO apt-get update
timeout "${CHROMIUM_INSTALL_TIMEOUT:-900}" $SUDO apt-get install -y --no-install-recommends chromium
/usr/bin/chromium --version
