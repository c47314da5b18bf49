#!/usr/bin/env bash
# The paper's central claim at small scale: does self-supervised pretraining on an hour of unlabelled
# speech cut the error of a model fine-tuned on 10 labelled minutes, against the same model trained
# from scratch on those 10 minutes for the same total time?
#
#   bash examples/experiment.sh                       # 35 + 15 minutes against 50 from scratch
#   PRETRAIN_MINUTES=20 FINETUNE_MINUTES=10 bash examples/experiment.sh
#   EXP_PARALLEL=1 bash examples/experiment.sh        # both arms at once, one core each
#   EXP_AMP=1 bash examples/experiment.sh             # bf16 training (CPUs with AMX-BF16)
#   PRETRAINED_FT_LR=1e-3 bash examples/experiment.sh # the pretrained arm's fine-tuning lr (default 2e-3)
#   PRETRAINED_FT_CNN=freeze bash examples/experiment.sh # ... with its CNN frozen (default: it learns)
#   PRETRAINED_FT_REINIT=0 bash examples/experiment.sh  # transformer layers re-initialised (default: all 4)
#   SPEED_PERTURB=1 bash examples/experiment.sh        # fine-tuning speed factors (default 0.9,1,1.1; 1: off)
#   EXP_LM=0 bash examples/experiment.sh               # no word-LM decoding (default: weights chosen on dev)
#
# Data: examples/large (built by `python examples/make_data.py --large --out examples/large` if missing):
# 60 min unlabelled, 10 min labelled, 5 min dev (validation), 5 min test, the same 14 voices.
# Writes EXP_DIR (default exp/): one run directory per arm, hypotheses, scores, and summary.json.
# Re-running resumes each stage where it stopped (the runs resume from their last checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."
w2v() { .venv/bin/w2v "$@"; }
out=${EXP_DIR:-exp}
pretrain_min=${PRETRAIN_MINUTES:-35}
finetune_min=${FINETUNE_MINUTES:-15}
scratch_min=$(python3 -c "print($pretrain_min + $finetune_min)")
data=examples/large

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

if [ ! -d "$data/unlabelled" ]; then
  step "building the 80-minute example set in $data"
  .venv/bin/python examples/make_data.py --large --out "$data"
fi

step "prep"
w2v prep "$data/unlabelled" --out "$out/data/unlabelled" --unlabelled --valid-percent 0
# 10 min labelled + 5 min dev, one third held out for validation: 10 minutes to train on.
w2v prep "$data/labelled" "$data/dev" --out "$out/data/labelled" --valid-percent 33.3
w2v prep "$data/test" --out "$out/data/test" --valid-percent 0

# Every stage has a time budget: warm-up, lr decay, the Gumbel temperature, validation and freezing follow
# the fraction of the budget spent, so the schedules complete on any CPU (or GPU) without sizing them in
# updates. EXP_AMP=1 trains in bf16 (`--amp`, CPUs with AMX-BF16 only).
amp=()
if [ "${EXP_AMP:-0}" = 1 ]; then amp=(--amp); fi

# The tiny preset carries the small-scale pretraining recipe (w2vcli/recipes.py, examples/RESULTS.md):
# 8 s batches of 2 s crops, lr 1e-3, 20 negatives from a 2 x 64 codebook, masks 0.3 x 5, diversity 0.5,
# Gumbel temperature 20 -> 0.5 over the first 40% of the budget.
recipe=(--preset tiny --log-every 25 "${amp[@]}")
# Fine-tuning, shared by both arms: the tiny fine-tuning recipe (10 s batches, tri-stage lr 2e-3, light
# time and channel masks, the CNN learning, RUN/best by CER, validation every 5% of the budget), plus
# speed perturbation (each utterance at 0.9, 1 or 1.1x: 14 voices with 43 s each need every variant).
finetune=(--preset tiny --log-every 25 --speed-perturb "${SPEED_PERTURB:-0.9,1,1.1}" "${amp[@]}")
# Pretrained: what transfers is the front end (CNN, projection, position convolution); the 4 transformer
# layers serve the contrastive task and read characters no better than random ones, so they start afresh
# (`--reinit-layers 4`). PRETRAINED_FT_CNN=freeze keeps the pretrained CNN frozen instead.
pretrained_ft=(--lr "${PRETRAINED_FT_LR:-2e-3}" "--${PRETRAINED_FT_CNN:-train}-feature-encoder"
               --reinit-layers "${PRETRAINED_FT_REINIT:-4}")
scratch_ft=()

pretrained_arm() {
  w2v pretrain "$out/data/unlabelled" --out "$out/pretrain" --max-minutes "$pretrain_min" "${recipe[@]}"
  w2v finetune "$out/data/labelled" --init "$out/pretrain" --out "$out/finetune" \
    --max-minutes "$finetune_min" "${finetune[@]}" "${pretrained_ft[@]}"
}
scratch_arm() {
  w2v finetune "$out/data/labelled" --init none --out "$out/scratch" \
    --max-minutes "$scratch_min" "${finetune[@]}" "${scratch_ft[@]}"
}

if [ "${EXP_PARALLEL:-0}" = 1 ]; then
  step "both arms at once, one core each: pretrain $pretrain_min + finetune $finetune_min min | scratch $scratch_min min"
  mkdir -p "$out"
  OMP_NUM_THREADS=1 pretrained_arm 2> "$out/pretrained-arm.log" &
  first=$!
  OMP_NUM_THREADS=1 scratch_arm 2> "$out/scratch-arm.log" &
  second=$!
  wait "$first"
  wait "$second"
else
  step "pretrain $pretrain_min min, then finetune $finetune_min min"
  pretrained_arm
  step "from scratch: finetune $scratch_min min"
  scratch_arm
fi

step "transcribe and score the held-out test set"
for arm in finetune scratch; do
  w2v transcribe "$out/data/test/train.jsonl" --model "$out/$arm" > "$out/$arm-test-hyp.jsonl"
  w2v score "$out/data/test/train.jsonl" "$out/$arm-test-hyp.jsonl" --missing empty --json "$out/$arm-test-score.json" \
    --by '-(espeak|flite)-'  # the rates per speech engine as well
done
# Word-LM decoding (EXP_LM=0: skip): a 4-gram of the fortunes never spoken in the set's unlabelled, dev or
# test audio, and a lexicon of its words. Each arm gets the LM weight and word score, or no LM at all,
# that scores best on the validation set: the LM fixes one model's near-misses and garbles another's.
if [ "${EXP_LM:-1}" = 1 ]; then
  step "word-LM decoding, its weights chosen per arm on the validation set"
  [ -s "$out/lm.arpa" ] || {
    .venv/bin/python examples/make_data.py --large --out "$data" --lm-text "$out/lm.txt"
    w2v lm "$out/lm.txt" --order 4 --out "$out/lm.arpa"
  }
  valid="$out/data/labelled/valid.jsonl"
  cer() { w2v score "$valid" "$1" --missing empty --json - 2> /dev/null | .venv/bin/python -c "import json, sys; print(json.load(sys.stdin)['cer'])"; }
  for arm in finetune scratch; do
    w2v transcribe "$valid" --model "$out/$arm" > "$out/$arm-valid-hyp.jsonl" 2> /dev/null
    best=(); best_cer=$(cer "$out/$arm-valid-hyp.jsonl")
    for weight in 0.3 0.5 0.8; do for score in 0 1 2; do
      lm=(--lexicon "$out/lm.arpa" --lm "$out/lm.arpa" --lm-weight "$weight" --word-score "$score")
      w2v transcribe "$valid" --model "$out/$arm" "${lm[@]}" > "$out/$arm-valid-hyp.jsonl" 2> /dev/null
      c=$(cer "$out/$arm-valid-hyp.jsonl")
      if .venv/bin/python -c "import sys; sys.exit(not $c < $best_cer)"; then best=("${lm[@]}"); best_cer=$c; fi
    done; done
    echo "{\"arm\": \"$arm\", \"valid_cer\": $best_cer, \"decoding\": \"${best[*]:-greedy}\"}" > "$out/$arm-lm-choice.json"
    w2v transcribe "$out/data/test/train.jsonl" --model "$out/$arm" "${best[@]}" > "$out/$arm-test-lm-hyp.jsonl"
    w2v score "$out/data/test/train.jsonl" "$out/$arm-test-lm-hyp.jsonl" --missing empty \
      --json "$out/$arm-test-lm-score.json" --by '-(espeak|flite)-'
  done
fi
.venv/bin/python examples/summarize_experiment.py "$out"
