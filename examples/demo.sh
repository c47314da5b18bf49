#!/usr/bin/env bash
# The demo: what a pretrained start buys when labels are few. On the bundled speech (examples/mini):
# prep -> a short continued pretraining from the shipped start (examples/pretrained/tiny) on the
# unlabelled folder -> fine-tuning on the labelled minutes -> transcription -> scoring, and beside it
# the same fine-tuning from random weights. Ends with a table: pretrained vs scratch on the held-out
# test set. About 10 minutes on 2 CPU cores; every stage has a time budget, so any CPU finishes in time.
# Run through `python3 tasks.py demo` (sets up .venv first). Re-running resumes where it stopped.
#   DEMO_DIR          where everything goes (default: demo/)
#   DEMO_PRETRAIN     minutes of continued pretraining (default 1.5)
#   DEMO_MINUTES      minutes of fine-tuning, each arm (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
w2v() { .venv/bin/w2v "$@"; }
out=${DEMO_DIR:-demo}
pretrain_min=${DEMO_PRETRAIN:-1.5}
minutes=${DEMO_MINUTES:-4}
mini=examples/mini
start=examples/pretrained/tiny

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "prep: labelled speech for fine-tuning (train + valid) and the held-out test set"
w2v prep "$mini/labelled" "$mini/dev" --out "$out/labelled" --valid-percent 8
w2v prep "$mini/test" --out "$out/test" --valid-percent 0

step "continued pretraining: the shipped start on the unlabelled folder ($pretrain_min min)"
# What a user does with a downloaded model: adapt it to their own audio without labels. The
# architecture and codebook come from the start; lr and Gumbel temperature stay low so that a few
# minutes adapt the model rather than scramble what ten hours taught it.
# The start was last pretrained with BEST-RQ (its model card), so it continues with the same objective.
w2v pretrain "$mini/unlabelled" --init "$start" --out "$out/pretrain" --max-minutes "$pretrain_min" \
  --objective best-rq --lr 2e-4

step "fine-tuning, both arms: CTC on $(wc -l < "$out/labelled/train.jsonl") labelled utterances ($minutes min each)"
# The tiny fine-tuning recipe (recipes.py); the only difference between the arms is the start.
w2v finetune "$out/labelled" --init "$out/pretrain" --out "$out/pretrained" --max-minutes "$minutes"
w2v finetune "$out/labelled" --init none --out "$out/scratch" --max-minutes "$minutes"

step "transcribe and score the held-out test set"
for arm in pretrained scratch; do
  w2v transcribe "$out/test/train.jsonl" --model "$out/$arm" > "$out/$arm-hyp.jsonl" || true
  w2v score "$out/test/train.jsonl" "$out/$arm-hyp.jsonl" --missing empty --json "$out/$arm-score.json" \
    > /dev/null
done
head -n 3 "$out/pretrained-hyp.jsonl"

step "pretrained vs scratch, on the held-out test set ($(wc -l < "$out/test/train.jsonl") utterances)"
.venv/bin/python - "$out" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
score = {arm: json.loads((out / f"{arm}-score.json").read_text()) for arm in ("pretrained", "scratch")}
print(f"{'':12}{'CER':>8}{'WER':>8}")
for arm, s in score.items():
    print(f"{arm:12}{s['cer']:8.1%}{s['wer']:8.1%}")
p, s = score["pretrained"]["cer"], score["scratch"]["cer"]
if s > 0:
    change = "below" if p <= s else "above"
    print(f"pretrained: CER {abs(1 - p / s):.0%} {change} scratch (relative)")
EOF
