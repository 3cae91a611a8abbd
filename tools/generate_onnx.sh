#!/usr/bin/env bash
# Regenerates Sources/ONNX/onnx.pb.swift from tools/onnx/onnx.proto (ONNX's proto2 schema,
# Apache-2.0, copied from the onnx Python package's onnx/onnx.proto of the version below). Needs protoc (Debian's protobuf-compiler) and protoc-gen-swift of the
# swift-protobuf version in Package.swift, built with
#   git clone https://github.com/apple/swift-protobuf && cd swift-protobuf &&
#   git checkout 1.39.0 && swift build -c release --product protoc-gen-swift
# and passed as PROTOC_GEN_SWIFT (or found on PATH). Neither is needed to build Recur.
set -euo pipefail
onnx_version=1.23.2
cd "$(dirname "$0")/.."
plugin="${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}"
if [ -z "$plugin" ]; then
    echo "protoc-gen-swift not found: set PROTOC_GEN_SWIFT to its path" >&2
    exit 1
fi
output="$(mktemp -d)"
trap 'rm -rf "$output"' EXIT
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Public --swift_out="$output" \
    -I tools/onnx onnx.proto
{
    echo "// Generated from tools/onnx/onnx.proto (onnx $onnx_version) by"
    echo "// protoc $(protoc --version | cut -d' ' -f2) and protoc-gen-swift $("$plugin" --version | awk '{print $NF}'). Do not edit:"
    echo "// regenerate with tools/generate_onnx.sh, that is"
    echo "//   protoc --plugin=protoc-gen-swift=PATH --swift_opt=Visibility=Public --swift_out=OUT -I tools/onnx onnx.proto"
    echo
    cat "$output/onnx.pb.swift"
} > Sources/ONNX/onnx.pb.swift
echo "wrote Sources/ONNX/onnx.pb.swift"
