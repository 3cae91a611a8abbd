#!/usr/bin/env bash
# Runs the whole test suite: installs the system packages if needed, then `swift test`.
# OpenCL tests run on the first OpenCL device (PoCL on a machine without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
swift test "$@"
