#!/usr/bin/env bash
# The held-out measure of a pretrained start (issue 24): fine-tune each start on the same 10 labelled
# minutes of `make_data.py --heldout` (sentences and voices no recipe was tuned on), then greedy CER on
# its test set, clean and mixed with noise at 10 dB SNR, beside the same from scratch.
#
#   bash examples/compare_starts.sh shipped=examples/pretrained/tiny new=../pt/run_aug scratch=none
#
# Each ARM=START is `w2v finetune --init START` (a run, a checkpoint, or none) with the tiny recipe and
# speed perturbation; ARM=START:FLAGS adds fine-tuning flags to that arm, e.g.
# `frozen=examples/pretrained/tiny:--freeze-updates 0.1`. Budget: CS_UPDATES updates (default 2000; equal updates whatever else loads the
# machine; a pretrained start's frozen CNN makes its updates cheaper, so equal updates give scratch more
# compute, not less), CS_MINUTES a safety cap. CS_JOBS arms at a time (default 2), one thread each.
# Writes CS_OUT (default ../compare_starts): data/, ARM/ runs, hypotheses, scores and summary.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
w2v() { .venv/bin/w2v "$@"; }
data=${CS_DATA:-../heldout}
out=${CS_OUT:-../compare_starts}
updates=${CS_UPDATES:-2000}
minutes=${CS_MINUTES:-30}
jobs=${CS_JOBS:-2}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"

if [ ! -d "$data/test-noisy" ]; then
  .venv/bin/python examples/make_data.py --heldout --seed "${CS_SEED:-7}" --out "$data"
fi
if [ ! -f "$out/data/l10/train.jsonl" ]; then
  w2v prep "$data/labelled" "$data/dev" "$data/test" "$data/test-noisy" --out "$out/data/prep" \
    --valid-percent 0 --workers 1 > /dev/null
  .venv/bin/python examples/study.py split "$out/data/prep" "$out/data" > /dev/null
fi

arm() {  # NAME START[:FLAGS]
  local name=$1 start=${2%%:*} flags=()
  if [[ $2 == *:* ]]; then read -ra flags <<< "${2#*:}"; fi
  w2v finetune "$out/data/l10" --init "$start" --out "$out/$name" --preset tiny --max-updates "$updates" \
    --max-minutes "$minutes" --log-every 50 --speed-perturb 0.9,1,1.1 --device cpu "${flags[@]}" \
    2> "$out/$name.log"
  for test in test test-noisy; do
    w2v transcribe "$out/data/$test.jsonl" --model "$out/$name" --engine torch \
      > "$out/$name-$test-hyp.jsonl" 2>> "$out/$name.log"
    w2v score "$out/data/$test.jsonl" "$out/$name-$test-hyp.jsonl" --missing empty \
      --json "$out/$name-$test-score.json" > /dev/null 2>> "$out/$name.log"
  done
}

running=0
for spec in "$@"; do
  arm "${spec%%=*}" "${spec#*=}" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

.venv/bin/python - "$out" "$@" <<'PY'
import json, sys
from pathlib import Path
out, names = Path(sys.argv[1]), [s.split("=", 1)[0] for s in sys.argv[2:]]
def cer(name, test):
    return json.loads((out / f"{name}-{test}-score.json").read_text())["cer"]
def progress(name):
    rows = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines() if l.strip()]
    rows = [r for r in rows if "update" in r and "updates_per_s" in r]
    last, seconds = 0, 0.0
    for r in rows:
        seconds += (r["update"] - last) / r["updates_per_s"]
        last = r["update"]
    return last, seconds / 60
scratch = "scratch" if "scratch" in names else None
lines = ["arm\tupdates\tminutes\ttest CER\tnoisy CER\tclean / scratch\tnoisy / scratch"]
for n in names:
    u, m = progress(n)
    c, z = cer(n, "test"), cer(n, "test-noisy")
    rel = (f"{c / cer(scratch, 'test'):.2f}\t{z / cer(scratch, 'test-noisy'):.2f}" if scratch else "\t")
    lines.append(f"{n}\t{u}\t{m:.1f}\t{c:.1%}\t{z:.1%}\t{rel}")
(out / "summary.tsv").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
