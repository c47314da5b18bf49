#!/usr/bin/env bash
# Reproduces the shipped pretrained starting point, examples/pretrained/tiny/, from nothing (issue 16):
# a `tiny` wav2vec 2.0 model (3.8M parameters) pretrained for 6,300 updates (2 h 47 min on a 2-core CPU) on 10 hours
# of synthesised English speech. Assumes the venv (`python3 tasks.py test` or `demo` makes it) and the
# speech tools: apt-get install espeak-ng flite festival sox fortunes festvox-kallpc16k festvox-kdlpc16k
# festvox-us-slt-hts. examples/pretrained/tiny/README.md (the model card) says what it is and how it went.
#
#   bash examples/pretrain_start.sh                  # corpus -> prep -> pretrain -> copy into place
#   PT_THREADS=2 bash examples/pretrain_start.sh     # threads for training (default 1, as measured)
#
# Everything big goes outside the work tree, beside it: PT_DATA (default ../pretrain_data, ~10 h of FLAC),
# PT_PREP (../pretrain_prep, `w2v prep` output), PT_RUN (../pretrain_run, the training run).
# Re-running resumes each stage: make_data.py keeps the files it already wrote, `w2v prep` resumes, and
# `w2v pretrain` resumes from the run's last checkpoint (every 250 updates; with a fresh --max-minutes cap).
set -euo pipefail
cd "$(dirname "$0")/.."
w2v() { .venv/bin/w2v "$@"; }
parent=$(cd .. && pwd)
data=${PT_DATA:-$parent/pretrain_data}
prep=${PT_PREP:-$parent/pretrain_prep}
run=${PT_RUN:-$parent/pretrain_run}
dest=examples/pretrained/tiny
threads=${PT_THREADS:-1}
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "corpus: 10 h of every English espeak-ng voice x variant, the flite voices and festival's, in $data"
# Deterministic by seed (and by the installed voices); sentences from Debian's fortunes, less those the
# mini and large sets may hold out for dev or test. Two synthesis processes: nothing else runs yet.
.venv/bin/python examples/make_data.py --pretrain-corpus --hours 10 --seed 0 --out "$data" --workers 2

step "prep: 16 kHz FLAC manifest, no validation split"
w2v prep "$data/unlabelled" --out "$prep" --unlabelled --valid-percent 0 --workers 1

step "pretrain: 6,300 updates (~130 minutes on one thread, 140 at most) on $threads thread(s)"
# The best pretraining recipe of examples/RESULTS.md (run 4: `experiment.sh`'s recipe, fp32 here): 16 s
# batches of 4 s crops, lr 1e-3 after 50 warm-up updates then linear decay, K=20 negatives from 2 x 64
# codes, masks 0.3 x 5, diversity weight 0.5, Gumbel temperature 20 -> 0.5 over the first 40% of the
# updates. No --speed-perturb: in session 5 it changed nothing beyond the noise, and this corpus already
# varies rate and pitch. --max-updates: the measured one-thread fp32 rate on the 2-core AMD EPYC this was
# made on (AVX2, no AMX: no --amp there; ~48.5 updates a minute with the other core busy) times ~130
# minutes, so that the whole schedule (warm-up, lr decay, Gumbel annealing) ends in time; --max-minutes
# is a safety cap (re-running resumes). PT_UPDATES changes the update count for a faster or slower machine.
w2v pretrain "$prep" --out "$run" --preset tiny --max-updates "${PT_UPDATES:-6300}" --max-minutes 140 \
  --batch-seconds 16 --crop-seconds 4 --lr 1e-3 --warmup 50 --num-negatives 20 --codebook-size 64 \
  --mask-prob 0.3 --mask-length 5 --diversity-weight 0.5 --gumbel-start 20 --gumbel-anneal 0.4 \
  --save-every 250 --log-every 25 --no-amp --device cpu --workers 0

step "copy the last checkpoint into $dest"
# The run's last checkpoint is already in our format (config.json + model.safetensors; trainer.pt only
# holds the optimizer and data position, not shipped). Copied rather than `w2v convert`ed: convert
# would replace the whole folder, model card included.
ckpt=$run/$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["checkpoint"])' "$run/last")
mkdir -p "$dest"
cp "$ckpt/config.json" "$dest/"
# Stored in fp16 (half the size: under 10 MB); loading casts the weights back into the fp32 model.
.venv/bin/python -c 'import sys; from safetensors.torch import load_file, save_file
state = load_file(sys.argv[1])
save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, sys.argv[2], metadata={"format": "pt"})' \
  "$ckpt/model.safetensors" "$dest/model.safetensors"
cp "$run/metrics.jsonl" "$dest/metrics.jsonl"
w2v info "$dest"
sha256sum "$dest/model.safetensors"
