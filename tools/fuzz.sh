#!/usr/bin/env bash
# Long fuzzing runs of one of Recur's parsers.
#
#   tools/fuzz.sh PARSER [SECONDS]
#
# PARSER is safetensors, delimited, series, lines, text, vocabulary or reviewnames: the harness
# (tools/fuzz/Harness.swift) is compiled with the parser's sources by swiftc with libFuzzer and
# AddressSanitizer, seeded with a corpus of valid inputs, and run for SECONDS (default 300).
# Findings are saved as .build/fuzz/PARSER/crash-*; the corpus grows in .build/fuzz/PARSER/corpus.
#
# PARSER cli or all-seeded runs the seeded mutation tests instead (swift test, debug build),
# RECUR_FUZZ_ITERATIONS inputs per parser (default 100000): the command line needs the
# ArgumentParser package and devices need OpenCL, which a standalone libFuzzer build doesn't link.
set -euo pipefail

parser="${1:?usage: tools/fuzz.sh PARSER [SECONDS] (safetensors delimited series lines text vocabulary reviewnames cli all-seeded)}"
seconds="${2:-300}"
root="$(cd "$(dirname "$0")/.." && pwd)"
sources="$root/Sources/Recur"
work="$root/.build/fuzz/$parser"

case "$parser" in
    cli) exec env RECUR_FUZZ_ITERATIONS="${RECUR_FUZZ_ITERATIONS:-20000}" swift test --package-path "$root" --filter CommandLineFuzzTests ;;
    all-seeded) exec env RECUR_FUZZ_ITERATIONS="${RECUR_FUZZ_ITERATIONS:-100000}" swift test --package-path "$root" --filter FuzzTests ;;
    safetensors|delimited|series|lines|text|vocabulary|reviewnames) ;;
    *) echo "unknown parser '$parser'" >&2; exit 2 ;;
esac

mkdir -p "$work/corpus"
flag="FUZZ_$(echo "$parser" | tr '[:lower:]' '[:upper:]')"
# The parsers and what they use, without the backends (no OpenCL or BLAS needed): Support and
# Tensor sit below the backends (README: Layout).
files=(
    "$root/tools/fuzz/Harness.swift" "$sources"/IO/SafeTensors.swift "$sources"/Support/*.swift "$sources"/Tensor/*.swift
    "$sources"/Data/*.swift
)
echo "building $work/fuzzer (-D $flag)"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name Recur -D "$flag" "${files[@]}" \
    -o "$work/fuzzer" 2> >(grep -v "ld.gold: warning" >&2)

# Seed corpus: the shared datasets' heads, the test fixtures, and small hand-made inputs.
data="$root/../shared/data"
seed() { printf '%b' "$2" > "$work/corpus/seed-$1"; }
case "$parser" in
    safetensors) cp "$root"/Tests/RecurTests/Fixtures/*_T5_B3_I4_H6.safetensors "$work/corpus/" ;;
    delimited) seed 1 '\x00label,text\nham,"a, b"\nspam,"x ""y"""\n'
               [[ -f "$data/sms_spam/SMSSpamCollection" ]] && { printf '\x02'; head -c 2000 "$data/sms_spam/SMSSpamCollection"; } > "$work/corpus/seed-sms" ;;
    series) [[ -f "$data/timeseries/airline-passengers.csv" ]] && { printf '\x00'; cat "$data/timeseries/airline-passengers.csv"; } > "$work/corpus/seed-airline"
            seed 2 '\x01"t","v"\r\n"1",1.5e3\r\n"2",-0.25' ;;
    lines) [[ -f "$data/rt_polarity/rt-polarity.neg" ]] && { printf '\x40'; head -c 2000 "$data/rt_polarity/rt-polarity.neg"; } > "$work/corpus/seed-rt"
           seed 1 '\x03good film\nbad\r\n' ;;
    text) [[ -f "$data/tinyshakespeare/input.txt" ]] && { printf '\x00'; head -c 2000 "$data/tinyshakespeare/input.txt"; } > "$work/corpus/seed-shakespeare"
          seed 1 '\x01Caf\xc3\xa9 <br />na\xc3\xafve\n' ;;
    vocabulary) seed 1 '["","<OOV>","the","\\n","\\u00e9","\\ud83d\\ude00"]' ;;
    reviewnames) seed 1 '12500_10.txt'; seed 2 '0_7.txt' ;;
esac

cd "$work"
echo "fuzzing $parser for $seconds s; findings go to $work"
./fuzzer -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 corpus
