#!/usr/bin/env bash
# The demo: bundled example speech -> prep -> pretrain -> finetune -> transcribe -> score.
# About 15 minutes on 2 CPU cores. Run through `python3 tasks.py demo` (sets up .venv first).
# Re-running resumes where it stopped; DEMO_DIR (default: demo/) holds everything it writes;
# DEMO_MINUTES sets the minutes each training stage may take (default 6).
set -euo pipefail
cd "$(dirname "$0")/.."
w2v() { .venv/bin/w2v "$@"; }
out=${DEMO_DIR:-demo}
minutes=${DEMO_MINUTES:-6}
mini=examples/mini

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "prep: labelled speech for fine-tuning (train + valid) and the held-out test set"
w2v prep "$mini/labelled" "$mini/dev" --out "$out/labelled" --valid-percent 20
w2v prep "$mini/test" --out "$out/test" --valid-percent 0

step "pretrain: self-supervised, on the unlabelled folder as it is ($minutes min)"
# The small-scale recipe of examples/RESULTS.md, its schedules sized to ~180 updates a minute on 2 cores:
# the Gumbel temperature falls from 20 to 0.5 over the first 40% of the updates.
w2v pretrain "$mini/unlabelled" --out "$out/pretrain" --preset tiny --max-minutes "$minutes" \
  --max-updates $((minutes * 180)) --batch-seconds 16 --crop-seconds 4 --lr 1e-3 --warmup 50 \
  --num-negatives 20 --codebook-size 64 --mask-prob 0.3 --mask-length 5 --diversity-weight 0.5 \
  --gumbel-start 20 --gumbel-anneal 0.4

step "finetune: CTC on $(wc -l < "$out/labelled/train.jsonl") labelled utterances ($minutes min)"
# examples/RESULTS.md: small batches, lr 2e-3, light masking, and a CNN that keeps learning.
w2v finetune "$out/labelled" --init "$out/pretrain" --out "$out/finetune" --max-minutes "$minutes" \
  --max-updates $((minutes * 280)) --batch-seconds 10 --lr 2e-3 --valid-every 100 --best-by cer \
  --train-feature-encoder --mask-prob 0.1 --mask-length 5 --mask-channel-prob 0.05 --mask-channel-length 16

step "transcribe the held-out test set"
w2v transcribe "$out/test/train.jsonl" --model "$out/finetune" > "$out/test-hyp.jsonl" || true
head -n 3 "$out/test-hyp.jsonl"

step "score against the reference transcripts"
w2v score "$out/test/train.jsonl" "$out/test-hyp.jsonl" --missing empty --json "$out/test-score.json"
