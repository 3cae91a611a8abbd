#!/usr/bin/env bash
# Runs a command on the GPU machine with NVIDIA's OpenCL driver registered.
# That machine ships the driver library but no ICD file naming it, and may lack the ICD loader:
# write the ICD file and put the staged libraries (tools/build-static.sh) on the library path.
#
# usage (from the repository root on the GPU machine): .gpu/gpu-run.sh .gpu/recur devices
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ ! -f /etc/OpenCL/vendors/nvidia.icd ]; then
    for candidate in /usr/lib/libnvidia-opencl.so.1 /usr/local/nvidia/lib64/libnvidia-opencl.so.1 \
                     /usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1; do
        if [ -e "$candidate" ]; then
            mkdir -p /etc/OpenCL/vendors
            echo "$candidate" > /etc/OpenCL/vendors/nvidia.icd
            break
        fi
    done
fi

export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
