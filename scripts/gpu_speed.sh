#!/usr/bin/env bash
# GPU folder scoring speed (issue 18, item 3), one prepared session of about 6 minutes on
# one H100/H200 (at most ~9.5 if every stage used its whole budget; run it with a 600 s limit):
#   0. the machine;
#   1. a folder of NCLIPS [2000] clips: symbolic links to ../shared/data/covid-blues clips, cycled;
#   2. the model alone: CNN frames/s at batch 64/128/256, eager vs a captured CUDA graph
#      (one process), then torch.compile(mode="reduce-overhead") at batch 128 (another
#      process: compiling is slow, and may fail); the windowed LSTM alone on the same rows;
#   3. agreement: the folder scorer against ScoringEngine on a few clips on this device
#      (frame labels and clip scores equal, largest probability difference);
#   4. end to end: the old path (ScoringEngine, clip by clip, batch 32) on a share of the
#      folder, then the folder scorer (frames of many clips batched, CUDA graph, decode pool)
#      on the whole folder; each prints its running rate every few seconds, so a stage cut
#      off by its budget still says how fast it went;
#   5. `lusviewer score FOLDER --batch-clips` on NCLI [200] clips: the CLI hook on this device.
# Without ../shared (it does not travel to a device machine) the folder is made of 48 synthetic
# 350x350 clips; without the shipped weights (108 MB), a random-init model of its architecture.
# Every stage runs under `timeout` with its own wall-clock budget; a stage that fails or runs
# out is said and the next one runs. Tables and logs go to $OUT (the device runner's folder)
# or $RESULTS [runs/gpu-speed].
#
#   bash scripts/gpu_speed.sh                 # on the GPU machine
#   DRY=1 bash scripts/gpu_speed.sh           # dry run on the CPU: tiny random model, 20 clips,
#                                             # batches 8/16/32, eager only, 2 decode workers
#
# Environment (defaults in brackets): DATA [../shared/data/covid-blues], MODEL
# [models/lusviewer-hybrid.json], DEVICE [cuda], NCLIPS [2000], OLD_CLIPS [120] (old path),
# NCLI [200], BATCHES [64,128,256], E2E_BATCH [256], WORKERS [0: cores - 1, at most 16],
# COMPILE [1] (0 skips torch.compile), SECONDS_PER [3] seconds measured per model row,
# SCALE [1; DRY: 3] multiplies every stage's budget (a busy 2-core CPU starts the spawned
# decode processes slowly), KEEP [0] (1 keeps the work folder), PY [python3].
set -u -o pipefail
DRY=${DRY:-0}
DATA=${DATA:-../shared/data/covid-blues}
PY=${PY:-python3}
if [ "$DRY" = 1 ]; then
  DEVICE=${DEVICE:-cpu}; NCLIPS=${NCLIPS:-20}; OLD_CLIPS=${OLD_CLIPS:-6}; NCLI=${NCLI:-6}
  BATCHES=${BATCHES:-8,16,32}; E2E_BATCH=${E2E_BATCH:-16}; WORKERS=${WORKERS:-2}; COMPILE=${COMPILE:-0}
  SECONDS_PER=${SECONDS_PER:-1}; CAPTURES=eager; SCALE=${SCALE:-3}
else
  DEVICE=${DEVICE:-cuda}; NCLIPS=${NCLIPS:-2000}; OLD_CLIPS=${OLD_CLIPS:-120}; NCLI=${NCLI:-200}
  BATCHES=${BATCHES:-64,128,256}; E2E_BATCH=${E2E_BATCH:-256}; WORKERS=${WORKERS:-0}; COMPILE=${COMPILE:-1}
  SECONDS_PER=${SECONDS_PER:-3}; CAPTURES=eager,graph; SCALE=${SCALE:-1}
fi
RES=${OUT:-${RESULTS:-runs/gpu-speed}}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-speed.XXXXXX")}
mkdir -p "$RES" "$WORK"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-$PWD}
t0=$(date +%s)
fails=0
say() { echo "[$(date +%H:%M:%S) +$(($(date +%s) - t0))s] $*" | tee -a "$RES/gpu_speed.log"; }
# stage NAME BUDGET_S CMD...: run CMD under a wall-clock budget, its output into the log
stage() {
  local name=$1 budget=$(($2 * SCALE)); shift 2
  say "stage $name (budget ${budget} s)"
  timeout --kill-after=10 "$budget" "$@" 2>&1 | tee -a "$RES/gpu_speed.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then say "stage $name ran out of its ${budget} s (partial rates above)"; fails=$((fails + 1));
  elif [ "$rc" != 0 ]; then say "stage $name FAILED (exit $rc)"; fails=$((fails + 1));
  else say "stage $name done"; fi
}

# 0. The machine.
say "machine: $(getconf _NPROCESSORS_ONLN) cores, $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}'), DRY=$DRY, device $DEVICE"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null | tee -a "$RES/gpu_speed.log"
$PY -c 'import torch, platform; print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' 2>&1 | tee -a "$RES/gpu_speed.log"

# The model: the shipped one; where its weights did not come along (they are 108 MB), a
# random-init model of the same card's architecture (speed does not depend on the weights,
# and the agreement stage compares two paths with the same weights); (DRY) a tiny random one.
MODEL=${MODEL:-models/lusviewer-hybrid.json}
if [ "$DRY" != 1 ] && ! $PY -c "import sys; from lusviewer.model import load_model; load_model(sys.argv[1])" "$MODEL" 2>/dev/null; then
  say "$MODEL cannot be loaded here: a random-init model of its architecture instead"
  $PY - "$MODEL" "$WORK/random" <<'EOF' || { say "could not make the random model"; exit 1; }
import json, sys
from pathlib import Path
import torch
from lusviewer.model import HybridModel, ModelCard, ModelConfig, parameter_counts, save_model
card = json.load(open(sys.argv[1]))
out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
cfg = ModelConfig.from_dict(card["architecture"])
model = HybridModel(cfg).eval()
keep = ("lstm_window", "lstm_burn_in", "bf16_label_agreement")
inference = {k: v for k, v in card.get("inference", {}).items() if k in keep}
mc = ModelCard(name="random-" + card["name"], version="speed", config=cfg, weights_file="", inference=inference,
               parameters=parameter_counts(model))
print("random model:", save_model(model, mc, out / "random.json", dtype=torch.float16))
EOF
  MODEL="$WORK/random/random.json"
fi
if [ "$DRY" = 1 ]; then
  MODEL="$WORK/tiny/tiny-cnn_lstm.json"
  $PY - "$WORK/tiny" <<'EOF' || { say "could not make the tiny model"; exit 1; }
import sys
from pathlib import Path
import torch
from lusviewer.model import HybridModel, ModelCard, ModelConfig, parameter_counts, save_model
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
cfg = ModelConfig.tiny("cnn_lstm")
model = HybridModel(cfg).eval()
card = ModelCard(name="tiny-cnn_lstm", version="dry-run", config=cfg, weights_file="",
                 inference={"lstm_window": 12, "lstm_burn_in": 4}, parameters=parameter_counts(model))
print("tiny model:", save_model(model, card, out / "tiny-cnn_lstm.json", dtype=torch.float32))
EOF
fi

# 1. The folder: NCLIPS links to the real clips, cycled (each clip decoded many times over).
FOLDER="$WORK/folder"
mkdir -p "$FOLDER"
mapfile -t SRC < <(ls "$DATA"/videos/*.mp4 2>/dev/null | sort)
if [ "${#SRC[@]}" = 0 ]; then  # ../shared does not travel to a device machine: synthetic clips of the same shape
  say "no clips in $DATA/videos: 48 synthetic 350x350 clips of 87 frames instead"
  DATA="$WORK/synthetic"
  $PY - "$DATA/videos" <<'EOF' || { say "could not write the synthetic clips"; exit 1; }
import sys
from pathlib import Path
from lusviewer.io.synthetic import synthetic_frames, write_video
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
for i in range(48):
    write_video(out / f"synthetic_{i:02d}.mp4", synthetic_frames(87, size=350, seed=i), fps=30.0)
print("48 clips written")
EOF
  mapfile -t SRC < <(ls "$DATA"/videos/*.mp4 | sort)
fi
mapfile -t REAL < <(realpath "${SRC[@]}")
for ((i = 0; i < NCLIPS; i++)); do
  src=${REAL[$((i % ${#REAL[@]}))]}
  ln -sf "$src" "$FOLDER/$(printf 'c%05d' "$i")_${src##*/}"
done
say "folder: $NCLIPS links to ${#SRC[@]} clips of $DATA in $FOLDER"

# The measuring code (one file, run once per stage).
BENCH="$WORK/gpu_speed_bench.py"
cat > "$BENCH" <<'EOF'
"""Stages of scripts/gpu_speed.sh: model | agree | engine | folder (argv[1])."""
import glob, os, sys, time
import numpy as np
import torch
from lusviewer.inference import ScoringEngine
from lusviewer.inference.folder import FolderScorer, window_logits
from lusviewer.model import load_model

def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)

def model_alone(card, device, batches, captures, seconds):
    loaded = load_model(card)
    print(f"\n| CNN run as | batch | frames/s (CNN alone, uint8 batch already on the device) | set-up s |")
    print("|---|---|---|---|")
    eng = ScoringEngine(loaded, device=device, batch_size=max(batches))
    size, dev = eng.input_size, eng.device
    for cap in captures:
        for b in batches:
            fs = FolderScorer(eng, batch_size=b, capture=cap)
            t = time.perf_counter(); run = fs._build(); sync(dev); setup = time.perf_counter() - t
            x = torch.randint(0, 255, (b, size, size, 3), dtype=torch.uint8, device=dev)
            for _ in range(3):
                run(x)
            sync(dev)
            t = time.perf_counter(); n = 0
            while True:  # synchronised every 10 steps: the rate counts finished work only
                for _ in range(10):
                    run(x)
                n += 10 * b
                sync(dev)
                if time.perf_counter() - t > seconds:
                    break
            rate = n / (time.perf_counter() - t)
            print(f"| {fs.stats.capture} ({eng.precision}) | {b} | {rate:,.0f} | {setup:.1f} |", flush=True)
    seq = eng.model.sequence
    if seq is not None:
        feats = [torch.randn(85, loaded.card.config.feature_dim, device=dev) for _ in range(256)]
        with torch.inference_mode():
            window_logits(seq, feats, window=eng.window, burn_in=eng.burn_in)
            sync(dev); t = time.perf_counter(); n = 0
            while time.perf_counter() - t < seconds:
                window_logits(seq, feats, window=eng.window, burn_in=eng.burn_in); n += 85 * 256
                sync(dev)
        print(f"\nLSTM alone (windows of 256 clips of 85 frames at once, fp32): {n / (time.perf_counter() - t):,.0f} frames/s")

def clips_of(folder, n):
    return sorted(glob.glob(os.path.join(folder, "*.mp4")))[:n]

def agree(card, device, folder, n, batch, workers):
    eng = ScoringEngine(load_model(card), device=device)
    clips = clips_of(folder, n)
    fs = FolderScorer(eng, batch_size=batch, workers=workers)
    got = {o.path: o for o in fs.score(clips)}
    same = total = clip_same = 0; worst = 0.0
    for c in clips:
        want = eng.score_clip(c); r = got[c].result
        assert r is not None, got[c].error
        same += int((want.scores == r.scores).sum()); total += len(want.scores)
        clip_same += int(want.summary.clip_score == r.summary.clip_score)
        worst = max(worst, float(np.abs(want.probs - r.probs).max()))
    print(f"agreement, folder scorer ({fs.stats.capture}, batch {batch}) vs ScoringEngine ({eng.precision}) on {len(clips)} "
          f"clips: frame labels {same}/{total} ({100 * same / total:.2f} %), clip scores {clip_same}/{len(clips)}, "
          f"largest probability difference {worst:.4f}")

def engine_path(card, device, folder, n, budget):
    eng = ScoringEngine(load_model(card), device=device, batch_size=32)
    clips = clips_of(folder, n)
    eng.score_clip(clips[0])  # warm-up
    t = time.perf_counter(); frames = 0; last = t
    for i, c in enumerate(clips):
        frames += len(eng.score_clip(c).scores)
        now = time.perf_counter()
        if now - last > 5:
            print(f"  old path: {i + 1} clips, {frames} frames, {frames / (now - t):,.0f} frames/s so far", flush=True); last = now
        if now - t > budget:
            break
    dt = time.perf_counter() - t
    print(f"END TO END old path (ScoringEngine clip by clip, batch 32, {eng.precision}): {i + 1} clips, {frames} frames, "
          f"{dt:.1f} s, {frames / dt:,.0f} frames/s")

def folder_path(card, device, folder, n, batch, workers):
    t_all = time.perf_counter()
    eng = ScoringEngine(load_model(card), device=device)
    clips = clips_of(folder, n)
    fs = FolderScorer(eng, batch_size=batch, workers=workers)
    t = time.perf_counter(); frames = 0; last = t; bad = 0; first = None
    for k, o in enumerate(fs.score(clips)):
        if o.result is None:
            bad += 1; print("  error:", o.error); continue
        frames += len(o.result.scores)
        now = time.perf_counter()
        first = first or now - t
        if now - last > 5:
            print(f"  folder scorer: {k + 1} clips, {frames} frames, {frames / (now - t):,.0f} frames/s so far", flush=True); last = now
    dt = time.perf_counter() - t
    s = fs.stats
    print(f"END TO END folder scorer (CNN {s.capture}, batch {batch}, {eng.precision}, {fs.workers} decode processes): "
          f"{len(clips)} clips ({bad} failed), {frames} frames, {dt:.1f} s, {frames / dt:,.0f} frames/s "
          f"(first result after {first or 0:.1f} s; model load {t - t_all:.1f} s not counted; {s.batches} batches, "
          f"{s.padded_frames} padded frames, at most {s.peak_frames_in_flight} frames waiting for the CNN)")

if __name__ == "__main__":
    what, card, device = sys.argv[1], sys.argv[2], sys.argv[3]
    if what == "model":
        model_alone(card, device, [int(b) for b in sys.argv[4].split(",")], sys.argv[5].split(","), float(sys.argv[6]))
    elif what == "agree":
        agree(card, device, sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]))
    elif what == "engine":
        engine_path(card, device, sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
    elif what == "folder":
        folder_path(card, device, sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]))
EOF

# 2. The model alone.
stage model 80 $PY "$BENCH" model "$MODEL" "$DEVICE" "$BATCHES" "$CAPTURES" "$SECONDS_PER"
if [ "$COMPILE" = 1 ]; then
  stage compile 120 $PY "$BENCH" model "$MODEL" "$DEVICE" 128 compile "$SECONDS_PER"
fi
# 3. Agreement on this device.
stage agree 45 $PY "$BENCH" agree "$MODEL" "$DEVICE" "$FOLDER" "$( [ "$DRY" = 1 ] && echo 4 || echo 12 )" "$E2E_BATCH" "$WORKERS"
# 4. End to end: the old path on a share, the folder scorer on the whole folder.
stage engine 70 $PY "$BENCH" engine "$MODEL" "$DEVICE" "$FOLDER" "$OLD_CLIPS" 50
stage folder 130 $PY "$BENCH" folder "$MODEL" "$DEVICE" "$FOLDER" "$NCLIPS" "$E2E_BATCH" "$WORKERS"
# 5. The CLI hook on this device.
CLI="$WORK/cli"
mkdir -p "$CLI"
for f in $(ls "$FOLDER" | head -n "$NCLI"); do ln -sf "$(realpath "$FOLDER/$f")" "$CLI/$f"; done
stage cli 45 bash -c "$PY -m lusviewer score '$CLI' --model '$MODEL' \
  --device '$DEVICE' --batch-clips --batch-size '$E2E_BATCH' --decode-workers '$WORKERS' -o '$WORK/cli_report.csv' \
  && wc -l '$WORK/cli_report.csv' '$WORK/cli_report_clips.csv'"

grep -E "^\||^END TO END|^agreement|^LSTM alone|ran out|FAILED|lusviewer: scored|model .* on |stage cli" "$RES/gpu_speed.log" > "$RES/gpu_speed_tables.md"
say "done: $fails stage(s) failed or ran out; tables in $RES/gpu_speed_tables.md"
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
exit $((fails > 0))
