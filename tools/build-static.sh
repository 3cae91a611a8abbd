#!/usr/bin/env bash
# Builds a release `recur` with the Swift runtime and CLBlast linked statically, strips it, and
# stages it for the GPU machine in .gpu/ (kept out of git): the binary, the OpenCL ICD loader,
# OpenBLAS with its runtime libraries, and the scripts that run there.
#
# usage: tools/build-static.sh [STAGE_DIR]   (default .gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:-.gpu}

# RECUR_STATIC_CLBLAST makes Package.swift link libclblast.a (it then needs only libstdc++).
# RECUR_MPI=0 leaves MPI out: the GPU machine has none, and its libraries would fill the staging.
# RECUR_TARGET_CPU=x86-64 compiles the library for any x86-64 processor (Package.swift otherwise
# targets AVX2 + FMA when the build host has them), as the other machine's processor is unknown.
RECUR_MPI=0 RECUR_TARGET_CPU=${RECUR_TARGET_CPU:-x86-64} RECUR_STATIC_CLBLAST=1 swift build -c release --static-swift-stdlib --product recur \
    --scratch-path .build-static

rm -rf "$stage/lib"  # libraries an earlier build needed must not travel
mkdir -p "$stage/lib"
cp .build-static/release/recur "$stage/recur"
strip "$stage/recur"

# Shared libraries the GPU machine may lack: copy each one `recur` needs that is not part of
# glibc or libstdc++ (both present there), resolving symlinks.
ldd "$stage/recur" | awk '/=> \// { print $1, $3 }' | while read -r name path; do
    case "$name" in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
        *) cp -L "$path" "$stage/lib/$name" ;;
    esac
done
cp tools/gpu-run.sh "$stage/"
echo "staged in $stage: $(du -sh "$stage" | cut -f1)"
ls -la "$stage" "$stage/lib"
