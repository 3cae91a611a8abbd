#!/usr/bin/env bash
# Builds the DocC documentation of the Recur library (Sources/Recur/Recur.docc and the doc
# comments of its public API) and of the RecurExport library and fails on any documentation warning: an unresolved symbol link,
# a parameter list that names a parameter the function does not have or leaves one out, a topic
# that names nothing. The library is built in debug first, in .build like `swift build`, so after
# a build or a test run only the documentation itself is new work.
#
# usage: tools/docs.sh [OUTPUT_DIR] [DOCC_OPTIONS...]
#   OUTPUT_DIR    where the .doccarchive folders go, one per library (default: the plugin's own
#                 folder under .build)
#   DOCC_OPTIONS  passed on to `docc convert`, e.g. --transform-for-static-hosting
#                 --hosting-base-path recur for a folder a static web server can serve
#
# Browse it with `swift package --disable-sandbox preview-documentation --target Recur`.
set -euo pipefail
cd "$(dirname "$0")/.."

output_dir=
if [[ $# -gt 0 && $1 != --* ]]; then
    output_dir=$1
    mkdir -p "$output_dir"
    shift
fi

# --disable-sandbox: on macOS the plugin may otherwise write only under .build; Linux has no
# plugin sandbox. --warnings-as-errors makes docc exit non-zero on the first warning, after
# printing every one.
for target in Recur RecurExport; do
    output=()
    [[ -z $output_dir ]] || output=(--output-path "$output_dir/$target.doccarchive")
    swift package --disable-sandbox generate-documentation --target "$target" "${output[@]}" \
        --warnings-as-errors "$@"
done
