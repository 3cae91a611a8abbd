#!/usr/bin/env bash
# Everything the GPU machine is for, in one call: list devices, verify every kernel and every
# PyTorch fixture on the NVIDIA device (persistent scans and one launch per step), time GEMM and
# the recurrent suite (with and without persistent scans), search GEMM parameters and time GEMM
# again, time `recur demo` (RECUR_GPU_DEMO=1) and one real-data training run, and time cuDNN on
# the same shapes for comparison. Run from the repository root on the GPU machine, after
# tools/build-static.sh staged .gpu/ here:
#
#   bash tools/gpu-check.sh [OUTPUT_DIR]     (default $OUT, else ./gpu-results)
#
# Full results go to OUTPUT_DIR; a short summary is printed last.
set -uo pipefail
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
# Every recur command gets a time limit (seconds, first argument), so that one that stalls cannot
# take the rest of the call with it; what it wrote so far stays in OUTPUT_DIR.
run() { local limit=$1; shift; timeout "$limit" .gpu/gpu-run.sh .gpu/recur "$@"; }
device=${RECUR_GPU_DEVICE:-opencl:nvidia}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/nvidia-smi.csv" 2>&1
run 60 devices --device "$device" > "$out/devices.txt" 2>&1
# cuDNN first: the reference numbers exist even if a later command stalls.
timeout 150 python3 tools/bench_torch_layers.py --device cuda --json > "$out/torch-cuda.jsonl" 2> "$out/torch-cuda.err"
run 150 verify --device "$device" --fixture Tests/RecurTests/Fixtures/*.safetensors > "$out/verify.txt" 2>&1
verify_status=$?
run 180 bench --device "$device" --all --json --repetitions 20 --gemm 1024 --gemm 2048 --gemm 4096 \
    > "$out/bench.jsonl" 2> "$out/bench.err"
# The same layer rows with one launch per time step, for the persistent scans' gain row by row.
run 150 bench --device "$device" --all --json --repetitions 20 --gemm 0 --pass forward --pass forward+backward \
    --persistent-scans off > "$out/bench-stepwise.jsonl" 2> "$out/bench-stepwise.err"
# CLBlast's GEMM parameters searched for this GPU (its database predates some), then the GEMM
# sweep again with them.
run 180 tune --device "$device" --sizes 256,512,1024,2048,4096 --max-candidates 24 --seconds 60 \
    > "$out/tune.txt" 2>&1
run 60 bench --device "$device" --json --repetitions 20 --gemm-only --gemm 1024 --gemm 2048 --gemm 4096 \
    > "$out/bench-tuned.jsonl" 2> "$out/bench-tuned.err"
# The demo's 20 training runs on the GPU (100 s; its CPU time is in the README), only when asked
# (RECUR_GPU_DEMO=1), and one real-data training run, timed by the commands themselves.
if [ "${RECUR_GPU_DEMO:-0}" = 1 ]; then
    ( time run 200 demo --device "$device" --output "$out/demo" ) > "$out/demo.txt" 2>&1
fi
sms=$(ls ../shared/data/sms_spam/SMSSpamCollection shared/data/sms_spam/SMSSpamCollection 2>/dev/null | head -1)
if [ -n "$sms" ]; then
    run 120 train --device "$device" --data "$sms" --format tsv --num-words 5000 --max-length 50 --epochs 5 \
        --test-split 0.2 --no-mask-padding --json > "$out/train-sms.jsonl" 2> "$out/train-sms.err"
fi
python3 tools/gpu_table.py "$out/bench.jsonl" "$out/torch-cuda.jsonl" "$out/bench-stepwise.jsonl" \
    > "$out/table.txt" 2>&1

echo "== devices";  cat "$out/devices.txt"
echo "== verify (exit $verify_status)"; grep -E "FAIL|passed|persistent scans" "$out/verify.txt" | tail -8
echo "== bench";    cat "$out/bench.jsonl"
echo "== tune";     tail -12 "$out/tune.txt"
echo "== GEMM after tuning"; grep '"gemm"' "$out/bench-tuned.jsonl"
[ -f "$out/demo.txt" ] && { echo "== demo"; tail -28 "$out/demo.txt"; }
[ -f "$out/train-sms.jsonl" ] && { echo "== train"; tail -1 "$out/train-sms.jsonl"; }
echo "== Recur (NVIDIA OpenCL) beside PyTorch (cuDNN)"; cat "$out/table.txt"; tail -3 "$out/torch-cuda.err"
