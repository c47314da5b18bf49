#!/usr/bin/env bash
# The GPU check (issue 18): one script, at most ~8 minutes, for a machine with a CUDA GPU.
#   1. the tests that need CUDA (the rest skip cleanly without one, so CI never runs them);
#   2. training steps of `base`, fp32, bf16 and fp16 autocast, ours against transformers;
#   3. two-process DDP pretraining through torchrun (nccl), if two GPUs exist;
#   4. transcription of 60 s of speech by `base`, ours against transformers, on the GPU;
# then one summary, also written to $OUT/gpu_check.txt when OUT is set (the device tool's folder).
#
#   bash bench/gpu_check.sh                       # PY (default .venv/bin/python) must have CUDA torch
#   PY=python3 bash bench/gpu_check.sh            # a system Python with torch, transformers, pytest
#
# Every step has its own time limit and its failure is reported, not fatal: the summary says which passed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
log=$(mktemp -d)/gpu_check
mkdir -p "$log"
summary=()
note() { summary+=("$1"); }

step() {  # NAME LIMIT_SECONDS COMMAND...: run it, keep its output, note pass/fail and its last line
  local name=$1 limit=$2
  shift 2
  printf '\n== %s\n' "$name" >&2
  if timeout "$limit" "$@" 2>&1 | tee "$log/$name.txt"; then
    note "$name: ok | $(grep -v '^\s*$' "$log/$name.txt" | tail -n 1)"
  else
    note "$name: FAILED (see $log/$name.txt) | $(grep -v '^\s*$' "$log/$name.txt" | tail -n 1)"
  fi
}

gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2> /dev/null || echo 0)
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)
for i in range(torch.cuda.device_count()): print(i, torch.cuda.get_device_name(i))' 2>&1 | tee "$log/env.txt"
note "environment: $gpus CUDA GPU(s); $(head -n 2 "$log/env.txt" | tr '\n' ' ')"
if [ "$gpus" = 0 ]; then
  printf '%s\n' "${summary[@]}" "no CUDA GPU: nothing to check" | tee "${OUT:-$log}/gpu_check.txt"
  exit 1
fi

step cuda-tests 150 "$PY" -m pytest -q -x -k "cuda or gpu or pinned or device or amp" tests/
for amp in "" "--amp"; do
  step "train-base${amp:+-amp}" 90 "$PY" bench/bench_pretrain.py --preset base --batch 8 --seconds 15.6 \
    --steps 10 --warmup 3 --device cuda $amp
done
step train-base-fp16 90 "$PY" bench/bench_pretrain.py --preset base --batch 8 --seconds 15.6 --steps 10 \
  --warmup 3 --device cuda --amp --dtype fp16
if [ "$gpus" -ge 2 ]; then
  run=$(mktemp -d)
  step ddp-2gpu 120 "$PY" -m torch.distributed.run --nproc-per-node 2 -m w2vcli pretrain examples/mini/unlabelled \
    --out "$run/pt" --preset tiny --max-updates 30 --device cuda --log-every 10
else
  note "ddp-2gpu: skipped (one GPU)"
fi
step transcribe-base 120 "$PY" bench/bench_transcribe.py speed --preset base --seconds 60 --repeats 5 \
  --warmup 2 --device cuda

printf '\n== summary\n' >&2
printf '%s\n' "${summary[@]}" | tee "${OUT:-$log}/gpu_check.txt"
