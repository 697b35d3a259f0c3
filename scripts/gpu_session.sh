#!/usr/bin/env bash
# One prepared GPU session (about 8 minutes on one H100): in parallel on the one GPU,
#   - the 5-fold patient-disjoint cross-validation of densenet, cnn and cnn_lstm,
#     one process per fold (`lusviewer crossval --run-folds i`), and
#   - the shipped model, the same recipe trained on all development patients
#     (`lusviewer train`, 20 % of the patients held out for early stopping);
# then the report over all folds, a CUDA check of `lusviewer score`, and a GPU benchmark
# of the new model. Every stage has a wall-clock budget, so the session ends on time.
#
#   DATA=../shared/data/covid-blues RESULTS=runs/gpu-results bash scripts/gpu_session.sh
#
# Environment (defaults in brackets): DATA [../shared/data/covid-blues], RUN [runs/gpu]
# (checkpoints, logs; use a fresh one per session), RESULTS [$RUN/results] (what to keep: report, card, weights, logs),
# DEVICE [cuda], CNN_MIN [1.8] / LSTM_MIN [0.7] per fold and variant, SHIP_CNN_MIN [3.6] /
# SHIP_LSTM_MIN [0.7], K [5], THREADS [2] CPU threads per process, BATCH [32], RUN_CV /
# SMOKE / BENCH [1] (0 skips that step), PARTS [$RUN/parts],
# FIRST_PARTS [all] weight parts copied to $RESULTS, LOSS [frame] (`--loss`: frame or mil),
# SIZE [128] input pixels, PRETRAIN_EPOCHS [0] / PRETRAIN_MIN [1.5] (> 0: every fold and the
# shipped model first pretrain their DenseNet branch on their own training patients' frames,
# `--pretrain-epochs`; the CNN and LSTM budgets come after it), TINY [0] (1: the tiny
# architecture, for a dry run of this script on a CPU), RECIPE [""] training options added to every
# fold and to the shipped model (the shipped recipe: RECIPE="--crop sector --loss sord --aux-weight 0.5
# --frames-per-clip 6 --val-fraction 0"), VARIANTS [densenet,cnn,cnn_lstm] the CV's variants, REPEATS [1]
# repeats of the k-fold (`--repeats`; 2 with seed 0 and K 5 = the folds of docs/results/cv-recipes-64px,
# so `lusviewer crossval-report` can pair the hybrid with the recipes measured there).
set -u -o pipefail
DATA=${DATA:-../shared/data/covid-blues}
RUN=${RUN:-runs/gpu}
RESULTS=${RESULTS:-$RUN/results}
DEVICE=${DEVICE:-cuda}
CNN_MIN=${CNN_MIN:-1.8}
LSTM_MIN=${LSTM_MIN:-0.7}
SHIP_CNN_MIN=${SHIP_CNN_MIN:-3.6}
SHIP_LSTM_MIN=${SHIP_LSTM_MIN:-0.7}
K=${K:-5}
THREADS=${THREADS:-2}
PARTS=${PARTS:-$RUN/parts}
FIRST_PARTS=${FIRST_PARTS:-99}
TINY=${TINY:-0}
RUN_CV=${RUN_CV:-1}
SMOKE=${SMOKE:-1}
BENCH=${BENCH:-1}
BATCH=${BATCH:-32}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$RUN/logs" "$RESULTS"
t0=$(date +%s)
say() { echo "[$(date +%H:%M:%S) +$(($(date +%s) - t0))s] $*"; }

SIZE=${SIZE:-128}
LOSS=${LOSS:-frame}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-0}
PRETRAIN_MIN=${PRETRAIN_MIN:-1.5}
EXTRA=()
if [ "$TINY" = 1 ]; then SIZE=32; EXTRA=(--tiny --fp32); fi
if [ "$PRETRAIN_EPOCHS" != 0 ]; then EXTRA+=(--pretrain-epochs "$PRETRAIN_EPOCHS" --pretrain-minutes "$PRETRAIN_MIN"); fi
RECIPE=${RECIPE:-}
VARIANTS=${VARIANTS:-densenet,cnn,cnn_lstm}
REPEATS=${REPEATS:-1}
read -r -a RECIPE_ARGS <<< "$RECIPE"
COMMON=(--data "$DATA" --cache-dir "$RUN/cache" --input-size "$SIZE" --optimizer adamw --lr 0.001
        --loss "$LOSS" --seed 0 --threads "$THREADS" --device "$DEVICE" --cnn-epochs 70 --batch-size "$BATCH" "${EXTRA[@]}"
        "${RECIPE_ARGS[@]}")
CVOPTS=(--variants "$VARIANTS" --repeats "$REPEATS")

say "machine: $(nproc) cores; $($PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

# 1. Decode every clip once, in parallel, into the frame cache all processes share.
$PY - "$DATA" "$RUN/cache" "$SIZE" <<'EOF' || exit 1
import multiprocessing, os, sys, time
from lusviewer.training.data import cached_frames, load_dataset
data, cache, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
def decode(path, s):
    return len(cached_frames(path, s, cache))
clips = load_dataset(data)
t = time.time()
with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
    n = pool.starmap(decode, [(c.path, s) for c in clips for s in sorted({size, 32})], chunksize=4)
print(f"decoded {len(clips)} clips ({sum(n)} frames over the sizes) in {time.time() - t:.1f} s")
EOF

# 2. Smoke test on this device (tiny architecture, every stage, then scoring): fail in
#    seconds rather than after minutes.
if [ "$SMOKE" = 1 ]; then
  say "smoke test on $DEVICE"
  $PY -m lusviewer train --data "$DATA" --cache-dir "$RUN/cache" --tiny --device "$DEVICE" --cnn-epochs 1 \
    --lstm-epochs 1 --end-to-end-epochs 1 --frames-per-clip 2 --out "$RUN/smoke" --work-dir "$RUN/smoke/work" \
    > "$RUN/logs/smoke.log" 2>&1 \
  && $PY -m lusviewer score resources/sample_clip.mp4 --model "$RUN/smoke/lusviewer-hybrid.json" \
    --device "$DEVICE" -q -o "$RUN/smoke/report.csv" >> "$RUN/logs/smoke.log" 2>&1 \
  || { say "SMOKE TEST FAILED"; tail -40 "$RUN/logs/smoke.log"; cp "$RUN/logs/smoke.log" "$RESULTS/"; exit 1; }
  say "smoke test passed"
fi

# 3. The folds and the shipped model, side by side on the one GPU.
CV="$RUN/cv"
pids=()
for ((i = 0; i < K * RUN_CV; i++)); do
  $PY -m lusviewer crossval "${COMMON[@]}" "${CVOPTS[@]}" --out "$CV" -k "$K" --run-folds "$i" \
      --cnn-minutes "$CNN_MIN" --lstm-minutes "$LSTM_MIN" > "$RUN/logs/fold$i.log" 2>&1 &
  pids+=($!)
done
$PY -m lusviewer train "${COMMON[@]}" --out "$RUN/ship" --work-dir "$RUN/ship-work" \
    --cnn-minutes "$SHIP_CNN_MIN" --lstm-minutes "$SHIP_LSTM_MIN" > "$RUN/logs/ship.log" 2>&1 &
ship=$!
while sleep 15; do
  running=0
  for p in "${pids[@]}" "$ship"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
  say "$running processes running; $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"
  grep -h "epoch .*: train loss" "$RUN"/logs/fold0.log "$RUN"/logs/ship.log 2>/dev/null | tail -2
  [ "$running" = 0 ] && break
done
fails=0
for i in "${!pids[@]}"; do wait "${pids[$i]}" || { fails=1; say "fold $i FAILED"; tail -20 "$RUN/logs/fold$i.log"; }; done
wait "$ship" || { fails=1; say "shipped-model training FAILED"; tail -20 "$RUN/logs/ship.log"; }

# 4. The report over all folds: only when every fold finished (a plain crossval run would
#    otherwise retrain the missing folds one after another, past the session's end).
if [ "$RUN_CV" = 1 ]; then
  if [ "$fails" = 0 ]; then
    say "report"
    rm -f "$CV/report.md"
    $PY -m lusviewer crossval "${COMMON[@]}" "${CVOPTS[@]}" --out "$CV" -k "$K" --cnn-minutes "$CNN_MIN" --lstm-minutes "$LSTM_MIN" \
        > "$RUN/logs/report.log" 2>&1 || { fails=1; tail -20 "$RUN/logs/report.log"; }
    cat "$CV/report.md" 2>/dev/null
  else
    say "no report: a fold failed (rerun that fold with --run-folds, then crossval without it)"
  fi
fi

# 5. The new model on this device: `lusviewer score` and a benchmark.
CARD="$RUN/ship/lusviewer-hybrid.json"
if [ -f "$CARD" ]; then
  $PY -m lusviewer score resources/sample_clip.mp4 --model "$CARD" --device "$DEVICE" -q -o "$RUN/sample_report.csv" \
      > "$RUN/logs/score.log" 2>&1 && say "scored the sample clip on $DEVICE" || { fails=1; cat "$RUN/logs/score.log"; }
  # Where the new model's Grad-CAM looks (the shipped one: image corners on 65 of 65 clips).
  $PY scripts/gradcam_corners.py --model "$CARD" --data "$DATA" 2>&1 | tee "$RUN/logs/gradcam.log" || true
  if [ "$BENCH" = 1 ]; then
    $PY benchmarks/bench_inference.py --model "$CARD" --device "$DEVICE" --data "$(dirname "$DATA")" \
        --sections model,engine --frames 256 --clips 8 2>&1 | tee "$RUN/logs/bench.log" || fails=1
  fi
fi

# 6. Keep: report + fold results + logs in one archive, the card, and the weights in 16 MB
#    parts under $PARTS (a transfer limit of the GPU machine), the first $FIRST_PARTS of
#    them also in $RESULTS. Join them with `cat weights.part? > lusviewer-hybrid.safetensors`.
say "packing"
keep=(logs)
for f in cv ship-work/state.json; do [ -e "$RUN/$f" ] && keep+=("$f"); done
tar -czf "$RESULTS/cv.tgz" --exclude='*.safetensors' -C "$RUN" "${keep[@]}" || fails=1
if [ -f "$CARD" ]; then
  cp "$CARD" "$RESULTS/"
  sha256sum "$RUN/ship/lusviewer-hybrid.safetensors" | tee "$RESULTS/weights.sha256"
  mkdir -p "$PARTS"
  rm -f "$PARTS"/weights.part?
  split -b 16000000 -d -a 1 "$RUN/ship/lusviewer-hybrid.safetensors" "$PARTS/weights.part"
  for f in $(ls "$PARTS"/weights.part? | head -n "$FIRST_PARTS"); do cp "$f" "$RESULTS/"; done
fi
ls -la "$RESULTS"
say "done (failures: $fails)"
exit $fails
