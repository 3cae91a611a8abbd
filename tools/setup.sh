#!/usr/bin/env bash
# Installs what Recur needs on a Debian/Ubuntu machine that has the Swift toolchain:
# the OpenCL ICD loader and headers, PoCL (an OpenCL device on the CPU), OpenBLAS, CLBlast, clinfo,
# Open MPI (for RecurDistributed; without it the package builds without that target), and
# python3-venv (tools/check_export.sh makes a virtual environment with ONNX Runtime).
# Safe to run again: packages already present are not reinstalled.
set -euo pipefail

packages=(ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libopenblas-dev libclblast-dev clinfo pkg-config
          libopenmpi-dev openmpi-bin python3-venv)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "setup: need root or sudo to install packages" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v swift >/dev/null || { echo "setup: the Swift toolchain (6.1 or later) must be on PATH" >&2; exit 1; }
