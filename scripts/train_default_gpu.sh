#!/usr/bin/env bash
# Train the default on one GPU for a fixed wall-clock budget with a cosine schedule that ends on time.
#   scripts/train_default_gpu.sh CORPUS RUN_DIR MINUTES [APIR_COMMAND]
# A short probe run (one epoch cut off after PROBE_MIN minutes) measures steps per minute, data loading
# and validation included; --epochs is then the number of whole epochs that fit in MINUTES, so the
# cosine schedule ends inside the budget instead of being cut off by --max-minutes.
set -euo pipefail
corpus=$1 run=$2 minutes=$3 apir=${4:-apir}
config=${CONFIG:-configs/default_level_gpu.yaml}
probe=$(mktemp -d)/probe
$apir train --data "$corpus" --config "$config" --out "$probe" --device cuda --epochs 1 \
    --max-minutes "${PROBE_MIN:-0.5}"
per_epoch=$(grep -o '[0-9]* steps/epoch' "$probe/train.log" | head -1 | cut -d' ' -f1)
epochs=$(python3 -c "import csv,sys; r=list(csv.DictReader(open(sys.argv[1])))[-1]; \
print(max(1, int(float(sys.argv[2]) * int(r['steps']) / float(r['minutes']) // int(sys.argv[3]))))" \
    "$probe/log.csv" "$minutes" "$per_epoch")
echo "probe: $(tail -1 "$probe/log.csv"); $per_epoch steps/epoch -> $epochs epochs in ~$minutes min"
exec $apir train --data "$corpus" --config "$config" --out "$run" --device cuda --epochs "$epochs"
