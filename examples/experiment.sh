#!/usr/bin/env bash
# The label-efficiency study: the paper's claim, measured as the paper measures it. From the shipped
# pretrained start (examples/pretrained/tiny) and from random weights, fine-tune on 1 and on 10
# labelled minutes with the same fine-tuning budget (15 minutes each); test on voices heard in the
# labelled data and on voices heard only in the unlabelled audio the start was pretrained on; decode
# greedily and with a word LM whose weights are chosen on dev. Ends with a table and a plot (cer.png).
#
#   bash examples/experiment.sh                    # 4 runs x 15 min, two at a time (one core each)
#   FINETUNE_MINUTES=5 bash examples/experiment.sh # a shorter budget
#   EXP_PARALLEL=0 bash examples/experiment.sh     # one run at a time, all cores each (twice as long)
#   EXP_LM=0 bash examples/experiment.sh           # greedy only
#   EXP_AMP=1 bash examples/experiment.sh          # bf16 training (CPUs with AMX-BF16 only)
#
# Data: STUDY_DATA (default ../study_data), built by `make_data.py --study` if missing: 10 labelled
# minutes and 5 of dev by the 8 voices of the bundled set, 5 test minutes by the same voices and 5 by 8
# voices that only the pretraining corpus speaks; test and dev sentences are among those the pretraining
# corpus leaves out; test-seen-noisy is test-seen with white, pink or brown noise at 10 dB SNR. Writes
# EXP_DIR (default exp/): runs ARM-l1, ARM-l10, hypotheses, scores, summary.json, cer.png. Re-running resumes each stage (runs continue from their last checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."
w2v() { .venv/bin/w2v "$@"; }
out=${EXP_DIR:-exp}
data=${STUDY_DATA:-../study_data}
minutes=${FINETUNE_MINUTES:-15}
start=examples/pretrained/tiny

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

.venv/bin/python -c "import matplotlib" 2> /dev/null \
  || .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[examples]"
if [ ! -d "$data/test-unseen" ]; then
  step "building the study set in $data"
  .venv/bin/python examples/make_data.py --study --out "$data"
fi

if [ ! -d "$data/test-seen-noisy" ]; then  # the seen voices' test with noise at 10 dB SNR
  .venv/bin/python -c 'import sys; sys.path.insert(0, "examples"); from pathlib import Path
from make_data import write_noisy_copy; write_noisy_copy(Path(sys.argv[1]), "test-seen", 10.0, 0)' "$data"
fi
step "prep: the five folders together (one vocabulary), then the arms' manifests"
w2v prep "$data/labelled" "$data/dev" "$data/test-seen" "$data/test-unseen" "$data/test-seen-noisy" \
  --out "$out/data/prep" --valid-percent 0
.venv/bin/python examples/study.py split "$out/data/prep" "$out/data"

amp=()
if [ "${EXP_AMP:-0}" = 1 ]; then amp=(--amp); fi
# Both arms: the tiny fine-tuning recipe (recipes.py: 10 s batches, tri-stage lr 2e-3, light time and
# channel masks, the CNN learning, RUN/best by dev CER, validation every 5% of the budget) and speed
# perturbation (each utterance at 0.9, 1 or 1.1x: a minute of labels needs every variant). The budget is
# time, so every run gets the same minutes whatever its speed.
finetune=(--preset tiny --max-minutes "$minutes" --log-every 25 --speed-perturb 0.9,1,1.1 "${amp[@]}")
run() {  # ARM LABELS
  local init=none
  if [ "$1" = pretrained ]; then init=$start; fi
  w2v finetune "$out/data/$2" --init "$init" --out "$out/$1-$2" "${finetune[@]}"
}

if [ "${EXP_PARALLEL:-1}" = 1 ]; then
  for labels in l10 l1; do
    step "fine-tuning on $labels, both arms at once, one core each ($minutes min)"
    OMP_NUM_THREADS=1 run pretrained "$labels" 2> "$out/pretrained-$labels.log" &
    first=$!
    OMP_NUM_THREADS=1 run scratch "$labels" 2> "$out/scratch-$labels.log" &
    second=$!
    wait "$first"
    wait "$second"
  done
else
  for labels in l10 l1; do for arm in pretrained scratch; do
    step "fine-tuning $arm on $labels ($minutes min)"
    run "$arm" "$labels"
  done; done
fi

step "transcribe and score both test sets, greedy"
runs=(pretrained-l10 scratch-l10 pretrained-l1 scratch-l1)
for name in "${runs[@]}"; do for test in test-seen test-unseen test-seen-noisy; do
  w2v transcribe "$out/data/$test.jsonl" --model "$out/$name" > "$out/$name-$test-hyp.jsonl"
  w2v score "$out/data/$test.jsonl" "$out/$name-$test-hyp.jsonl" --missing empty \
    --json "$out/$name-$test-score.json" --by '^[^/]*/[a-z][0-9]+-(.*)$' > /dev/null
done; done

# Word-LM decoding (EXP_LM=0: skip): a 4-gram of the fortunes spoken in none of the set's dev and test
# audio, and a lexicon of its words. Each run gets the LM weight and word score, or no LM at all, that
# scores best on dev: the LM fixes one model's near-misses and garbles another's.
if [ "${EXP_LM:-1}" = 1 ]; then
  step "word-LM decoding, its weights chosen per run on dev"
  [ -s "$out/lm.arpa" ] || {
    .venv/bin/python examples/make_data.py --study --out "$data" --lm-text "$out/lm.txt"
    w2v lm "$out/lm.txt" --order 4 --out "$out/lm.arpa"
  }
  dev="$out/data/l10/valid.jsonl"
  cer() { w2v score "$dev" "$1" --missing empty --json - 2> /dev/null | .venv/bin/python -c "import json, sys; print(json.load(sys.stdin)['cer'])"; }
  for name in "${runs[@]}"; do
    if [ ! -s "$out/$name-lm-choice.json" ]; then
      w2v transcribe "$dev" --model "$out/$name" > "$out/$name-dev-hyp.jsonl" 2> /dev/null
      best=(); best_cer=$(cer "$out/$name-dev-hyp.jsonl")
      # the grid reaches past session 8's choice (0.3, 2), which sat at its corner
      for weight in 0.1 0.2 0.3 0.5 0.8; do for score in 0 1 2 3 4; do
        lm=(--lexicon "$out/lm.arpa" --lm "$out/lm.arpa" --lm-weight "$weight" --word-score "$score")
        w2v transcribe "$dev" --model "$out/$name" "${lm[@]}" > "$out/$name-dev-hyp.jsonl" 2> /dev/null
        c=$(cer "$out/$name-dev-hyp.jsonl")
        if .venv/bin/python -c "import sys; sys.exit(not $c < $best_cer)"; then best=("${lm[@]}"); best_cer=$c; fi
      done; done
      echo "{\"dev_cer\": $best_cer, \"decoding\": \"${best[*]:-greedy}\"}" > "$out/$name-lm-choice.json"
    fi
    read -r -a best < <(.venv/bin/python -c "import json, sys; d = json.load(open(sys.argv[1]))['decoding']; print('' if d == 'greedy' else d)" "$out/$name-lm-choice.json")
    for test in test-seen test-unseen; do
      w2v transcribe "$out/data/$test.jsonl" --model "$out/$name" "${best[@]}" > "$out/$name-$test-lm-hyp.jsonl"
      w2v score "$out/data/$test.jsonl" "$out/$name-$test-lm-hyp.jsonl" --missing empty \
        --json "$out/$name-$test-lm-score.json" --by '^[^/]*/[a-z][0-9]+-(.*)$' > /dev/null
    done
  done
fi
.venv/bin/python examples/study.py summarize "$out"
