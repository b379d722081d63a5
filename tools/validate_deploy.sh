#!/usr/bin/env bash
# Validate everything that ships CourseBridge (Dockerfiles, the Helm chart under every profile, the
# Config Connector manifests, skaffold.yaml, the monitoring JSON and PromQL): the deployment tests, which
# `make test` runs too. Installs the tools on first use (tools/install_test_tools.sh, into .tools/).
#
#   bash tools/validate_deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec make --no-print-directory test PYTEST_ARGS="-q tests/deploy"
