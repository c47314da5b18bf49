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
# The tiny preset carries the small-scale recipe of examples/RESULTS.md; the time budget drives its
# schedule (warm-up, lr decay, Gumbel temperature), so it completes on any CPU.
w2v pretrain "$mini/unlabelled" --out "$out/pretrain" --preset tiny --max-minutes "$minutes"

step "finetune: CTC on $(wc -l < "$out/labelled/train.jsonl") labelled utterances ($minutes min)"
# The tiny fine-tuning recipe: small batches, lr 2e-3, light masking, a CNN that keeps learning.
w2v finetune "$out/labelled" --init "$out/pretrain" --out "$out/finetune" --max-minutes "$minutes"

step "transcribe the held-out test set"
w2v transcribe "$out/test/train.jsonl" --model "$out/finetune" > "$out/test-hyp.jsonl" || true
head -n 3 "$out/test-hyp.jsonl"

step "score against the reference transcripts"
w2v score "$out/test/train.jsonl" "$out/test-hyp.jsonl" --missing empty --json "$out/test-score.json"
