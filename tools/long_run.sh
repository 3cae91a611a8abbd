#!/usr/bin/env bash
# A long training run of a small model (at least 20,000 optimizer steps) whose memory must stay
# flat: samples the process's resident memory while `recur train` runs, and prints the backend's
# live buffers and bytes after every epoch, then the growth from the first epoch to the last.
#
# usage: tools/long_run.sh [steps (default 50000)] [device (default cpu)]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-50000}
device=${2:-cpu}
work=${OUT:-.build/long-run}
mkdir -p "$work"
tools/setup.sh >/dev/null
swift build -c release --product recur >/dev/null

# 2,000 labelled lines (a marker word decides the label); 1,800 train at batch 8: 225 steps per epoch.
awk 'BEGIN { srand(7); split("the a film plot was long scene music actor", w, " ");
  for (i = 0; i < 2000; i++) { p = rand() < 0.5; line = "";
    n = 3 + int(rand() * 6); m = int(rand() * n);
    for (j = 0; j < n; j++) line = line (j == m ? (p ? "good" : "bad") : w[1 + int(rand() * 9)]) " ";
    print (p ? "pos" : "neg") "\t" line } }' > "$work/data.tsv"
epochs=$(( (steps + 224) / 225 ))

.build/release/recur train --device "$device" --data "$work/data.tsv" --format tsv --max-length 10 \
    --embedding 8 --hidden 16 --batch-size 8 --epochs "$epochs" --validation-split 0.1 --clip-norm 1 \
    --json > "$work/log.jsonl" 2> "$work/stderr.log" &
pid=$!
echo "seconds  resident_kib" > "$work/rss.txt"
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$rss" ] && echo "$(( $(date +%s) - start ))  $rss" >> "$work/rss.txt"
    sleep 0.5
done
wait "$pid"

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
epochs = [json.loads(l) for l in open(f"{work}/log.jsonl") if l.startswith("{") and "final" not in l]
rss = [tuple(map(int, l.split())) for l in open(f"{work}/rss.txt").readlines()[1:]]
print(f"{epochs[-1]['step']} steps in {len(epochs)} epochs, final loss {epochs[-1]['loss']:.4f}")
print(f"backend live buffers: epoch 1 {epochs[0]['live_buffers']}, last {epochs[-1]['live_buffers']}; "
      f"live bytes: epoch 1 {epochs[0]['live_bytes']}, last {epochs[-1]['live_bytes']}")
if len(rss) >= 2:
    settled = rss[min(4, len(rss) - 1)]
    print(f"resident memory: {settled[1]} KiB at {settled[0]} s, {rss[-1][1]} KiB at {rss[-1][0]} s "
          f"(growth {rss[-1][1] - settled[1]} KiB), peak {max(r[1] for r in rss)} KiB over {len(rss)} samples")
PY
