#!/usr/bin/env bash
# Data-parallel throughput on this machine: the IMDB recipe and a larger LSTM, each trained by
# `recur train --distributed` on 1 and 2 ranks (release build, CPU backend, one OpenBLAS thread
# per rank, b = 32 examples per rank, so 2 ranks take a global batch of 64). Prints a Markdown
# table from the `communication:` line rank 0 writes at the end: samples per second, milliseconds
# per step (the wall time of training over its steps, the first one included), the time per step
# inside MPI_Allreduce and its share of the step, the time rank 0 waited for the slower rank
# before it (a barrier, --profile), the time copying gradients between the device and the host
# buffer, and the scaling efficiency (samples/s with 2 ranks / (2 x samples/s with 1)).
#
# Usage: tools/mpi_scaling.sh [aclImdb folder]   (default: ../shared/data/imdb/aclImdb)
# Environment: IMDB_EPOCHS, LARGE_EPOCHS (epochs per run; no validation split, no checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/imdb/aclImdb}"
command -v mpirun >/dev/null || { echo "mpi_scaling: mpirun not found: install openmpi-bin (tools/setup.sh)" >&2; exit 1; }

swift build -c release --product recur >&2
binary=.build/release/recur

# Open MPI on one host: shared memory without the single-copy mechanism containers forbid, no
# core binding (the ranks share the machine with whatever else runs), ranks that yield the core
# while they wait instead of spinning on it, root allowed in CI images.
flags=(--oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none
       --mca mpi_yield_when_idle 1)
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
# One thread per rank. OPENBLAS_CORETYPE: recur restarts itself with the right kernel set when
# Debian's OpenBLAS does not recognise the processor (see BLASCoreType).
export OPENBLAS_NUM_THREADS=1

imdb=(--num-words 5000 --embedding 32 --hidden 32 --max-length 400 --epochs "${IMDB_EPOCHS:-4}")
large=(--num-words 20000 --embedding 128 --hidden 512 --max-length 100 --epochs "${LARGE_EPOCHS:-1}")

# Prints the value of `key` in a `communication: key=value ...` line.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

echo "$(date -u +%Y-%m-%d) on $(nproc) cores of $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)," \
     "load average $(cut -d" " -f1-3 /proc/loadavg),"\
     "Open MPI $(mpirun --version | sed -n 's/.*Open MPI) //p'), OpenBLAS $(dpkg-query -W -f='${Version}' libopenblas0 2>/dev/null || echo '?')"
echo
echo "| model | ranks | global batch | steps | samples/s | ms/step | allreduce ms/step | allreduce share | wait ms/step | staging ms/step | gradient bytes | scaling efficiency |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for model in imdb large; do
    if [ "$model" = imdb ]; then arguments=("${imdb[@]}"); name="IMDB recipe: Embedding(5000, 32) -> LSTM(32) -> Dense(1), T=400"
    else arguments=("${large[@]}"); name="larger: Embedding(20000, 128) -> LSTM(512) -> Dense(1), T=100"; fi
    single=""
    for ranks in 1 2; do
        line=$(mpirun "${flags[@]}" -np "$ranks" "$binary" train --distributed --profile --data "$data" \
               --format imdb --validation-split 0 --device cpu --batch-size $((32 * ranks)) --cell lstm \
               "${arguments[@]}" 2>&1 >/dev/null | grep '^communication:')
        rate=$(field samples_per_second "$line")
        [ "$ranks" = 1 ] && single=$rate
        efficiency=$(awk -v r="$rate" -v s="$single" -v n="$ranks" 'BEGIN { printf "%.0f%%", 100 * r / (n * s) }')
        echo "| $name | $ranks | $((32 * ranks)) | $(field steps "$line") | $rate | $(field ms_per_step "$line") |" \
             "$(field allreduce_ms_per_step "$line") | $(field allreduce_share_percent "$line")% |" \
             "$(field wait_ms_per_step "$line") | $(field staging_ms_per_step "$line") |" \
             "$(field gradient_bytes "$line") | $efficiency |"
    done
done
