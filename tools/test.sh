#!/usr/bin/env bash
# Runs the whole test suite: installs the system packages if needed, then `swift test`.
# OpenCL tests run on the first OpenCL device (PoCL on a machine without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# PoCL compiles each kernel for every work-group size it is launched with, which on a new machine
# is most of a first run's time; unoptimised kernels compile about five times faster and run the
# tests' small sizes just as well. POCL_EXTRA_BUILD_FLAGS set (even empty) keeps the caller's
# choice: POCL_EXTRA_BUILD_FLAGS= tools/test.sh tests the kernels as users run them.
export POCL_EXTRA_BUILD_FLAGS="${POCL_EXTRA_BUILD_FLAGS--cl-opt-disable}"
swift test "$@"
