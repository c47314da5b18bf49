"""Mutation check: break the package one small, deliberate way at a time and see whether its tests notice.

    .venv/bin/python bench/mutants.py --list                          # the mutants, nothing run
    .venv/bin/python bench/mutants.py --check                         # each old text is still there, once
    .venv/bin/python bench/mutants.py --only kn-one-discount,cli-int8-ignored
    .venv/bin/python bench/mutants.py                                 # all of them (one pytest run each)
    .venv/bin/python bench/mutants.py --only NAME --show              # and the tail of each pytest output

A mutant is (name, file, exact old text, new text, tests). The script copies w2vcli/, tests/ and
pyproject.toml into a temporary directory, runs the chosen mutants' tests there once unmutated (they
must pass, else a "kill" would mean nothing), then for each mutant replaces the old text (which must
occur exactly once) in the copy, runs `python -m pytest -x -q` on its tests with PYTHONPATH pointing
at the copy, and puts the file back. The working tree is only read. Bytecode is never written, so a
restored file can not be shadowed by the mutant's cached .pyc.

Verdicts: killed (pytest failed), survived (passed), timeout (counted as killed), error (pytest could
not run the tests: exit code 2-5), stale (the old text is not in the file exactly once: the code
changed under the mutant; update its entry). OMP_NUM_THREADS defaults to 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("w2vcli", "tests", "pyproject.toml")
TIMEOUT_S = 600


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the repository root
    old: str  # exact text, found exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids or files, relative to the root
    why: str  # what a user would see go wrong


def more_mutants() -> list[Mutant]:
    """Mutants kept beside this file, one module per area (`bench/mutants_*.py`, each with a MUTANTS list
    of tuples in Mutant's field order), so that work on different areas never edits the same list."""
    import importlib.util

    found = []
    for path in sorted(Path(__file__).resolve().parent.glob("mutants_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found += [Mutant(*entry) for entry in module.MUTANTS]
    return found


CHUNK_TESTS = ("tests/test_chunking_bounded_context.py", "tests/test_chunking.py")
SCORE_TESTS = ("tests/test_score_bootstrap_numpy.py", "tests/test_scoring.py", "tests/test_cli_score.py")
NGRAM_TESTS = ("tests/test_ngram_kneser_ney_reference.py", "tests/test_ngram.py")
FLAG_TESTS = ("tests/test_cli_transcribe_flags.py",)

MUTANTS = [
    # The seven of issue 17 (two of them come in two parts).
    Mutant("chunk-half-right-context", "w2vcli/data/chunking.py",
           "need = plan.end_sample(keep_end + plan.stride_frames)",
           "need = plan.end_sample(keep_end + plan.stride_frames // 2)",
           CHUNK_TESTS, "frames before each chunk border lose half their right-hand context"),
    Mutant("output-frames-one-short", "w2vcli/data/chunking.py",
           "        return max(n, 0)\n\n    def end_sample",
           "        return max(n - 1, 0)\n\n    def end_sample",
           CHUNK_TESTS, "a file's last frame can be dropped"),
    Mutant("bootstrap-delta-ci-sign", "w2vcli/pipelines/score.py",
           "scoring.percentile_ci(wb - wa)", "scoring.percentile_ci(wa - wb)",
           SCORE_TESTS, "the WER interval of B - A is the one of A - B"),
    Mutant("bootstrap-cer-p-swapped", "w2vcli/pipelines/score.py",
           "scoring.probability_of_improvement(ca, cb)", "scoring.probability_of_improvement(cb, ca)",
           SCORE_TESTS, "P(B better) at the character level is P(A better)"),
    Mutant("arpa-header-off-by-one", "w2vcli/decoding/ngram.py",
           'f.write(f"ngram {n}={len(g)}\\n")', 'f.write(f"ngram {n}={len(model.probs[n - 1])}\\n")',
           NGRAM_TESTS, "the unigram count leaves out <s>: KenLM refuses the file"),
    Mutant("kn-raw-counts", "w2vcli/decoding/ngram.py",
           "counts[n - 2][gram[1:]] += 1", "counts[n - 2][gram[1:]] += counts[n - 1][gram]",
           NGRAM_TESTS, "lower orders use raw counts, not continuation counts"),
    Mutant("kn-one-discount", "w2vcli/decoding/ngram.py",
           "return 0.0 if c == 0 else d[min(c, 3) - 1]", "return 0.0 if c == 0 else d[0]",
           NGRAM_TESTS, "D1 for every count instead of D1, D2, D3+"),
    Mutant("cli-int8-ignored", "w2vcli/cli/transcribe.py",
           "device=dev, int8=int8, engine", "device=dev, int8=False, engine",
           FLAG_TESTS, "--int8 does nothing"),
    Mutant("cli-lm-weight-word-score-swapped", "w2vcli/cli/transcribe.py",
           "lm_weight=lm_weight,\n        word_score=word_score,",
           "lm_weight=word_score,\n        word_score=lm_weight,",
           FLAG_TESTS, "--lm-weight sets the word score and the other way round"),
    # Scoring.
    Mutant("scoring-ties-count-as-better", "w2vcli/scoring/error_rates.py",
           "return float(np.mean(rates_b < rates_a))", "return float(np.mean(rates_b <= rates_a))",
           SCORE_TESTS, "identical systems look better than chance"),
    Mutant("scoring-ref-len-counts-insertions", "w2vcli/scoring/error_rates.py",
           "return self.hits + self.substitutions + self.deletions\n",
           "return self.hits + self.substitutions + self.deletions + self.insertions\n",
           SCORE_TESTS, "insertions enlarge the denominator"),
    Mutant("scoring-ci-90-percent", "w2vcli/scoring/error_rates.py",
           "tail = (1 - level) / 2 * 100", "tail = (1 - level) * 100",
           SCORE_TESTS, "the '95%' interval is a 90% one"),
    # Decoding and the word LM.
    Mutant("greedy-no-collapse", "w2vcli/decoding/ctc.py",
           "bounds = np.flatnonzero(np.diff(best)) + 1", "bounds = np.arange(1, len(best))",
           ("tests/test_decoding.py",), "repeated frames become repeated letters"),
    Mutant("beam-repeat-without-blank", "w2vcli/decoding/ctc.py",
           "                    grown = pb + p\n", "                    grown = total + p\n",
           ("tests/test_decoding.py",), "a repeated token without a blank between spells a double letter"),
    Mutant("lm-weight-ignored-at-sentence-end", "w2vcli/decoding/lm.py",
           "bonus += self.lm_weight * self.lm.score(state, EOS)[0]", "bonus += self.lm.score(state, EOS)[0]",
           ("tests/test_decoding.py", "tests/test_losses_lm_exact.py"),
           "</s> is scored at full weight whatever --lm-weight says"),
    Mutant("arpa-backoff-ignored", "w2vcli/decoding/lm.py",
           "total += self.probs.get(context[i:], (0.0, 0.0))[1]", "total += 0.0",
           ("tests/test_decoding.py", *NGRAM_TESTS), "backing off costs nothing"),
    # Chunking and the transcription engine.
    Mutant("stitch-greedy-no-join", "w2vcli/data/chunking.py",
           "if k == 0 and ids and ids[-1] == i and ends[-1] == a + offset:", "if False:",
           CHUNK_TESTS, "a letter spanning a chunk border is spelled twice"),
    Mutant("chunks-normalised-alone", "w2vcli/pipelines/_transcribe_engine.py",
           "        return (x - stats[0]) / stats[1]\n",
           "        return normalize_waveform(x[None], torch.tensor([len(x)]))[0]\n",
           ("tests/test_transcribe.py",), "each chunk of a long file is scaled by its own statistics"),
    # Losses and masking.
    Mutant("ctc-loss-mean", "w2vcli/model/losses.py",
           'blank=blank, reduction="sum", zero_infinity=True', 'blank=blank, reduction="mean", zero_infinity=True',
           ("tests/test_losses_lm_exact.py", "tests/test_parity.py", "tests/test_train.py"),
           "the CTC loss is averaged per label, not summed"),
    Mutant("contrastive-temperature-multiplied", "w2vcli/model/losses.py",
           "logits = torch.cat([pos, neg], dim=1) / temperature",
           "logits = torch.cat([pos, neg], dim=1) * temperature",
           ("tests/test_parity.py", "tests/test_continue.py", "tests/test_model.py"),
           "logits times the temperature (0.1), not divided by it: 100x flatter"),
    Mutant("accuracy-ties-win", "w2vcli/model/losses.py",
           "wins = (logits[:, :1] > negatives) & torch.isfinite(negatives)", "wins = logits[:, :1] >= negatives",
           ("tests/test_model.py", "tests/test_parity.py"), "a collapsed codebook reads as perfect accuracy"),
    Mutant("mask-min-masks-ignored", "w2vcli/training/masking.py",
           "n = max(min_masks, int(mask_prob * n_frames / mask_length + u))",
           "n = int(mask_prob * n_frames / mask_length + u)",
           ("tests/test_model.py", "tests/test_losses_lm_exact.py"), "short utterances get no masked span"),
    Mutant("negatives-include-positive", "w2vcli/training/masking.py",
           "draw += (draw >= torch.arange(n)[:, None]).long()", "draw += 0 * (draw >= torch.arange(n)[:, None]).long()",
           ("tests/test_model.py",), "a frame can be its own distractor"),
    # Resume and schedules.
    Mutant("resume-restarts-the-epoch", "w2vcli/data/batching.py",
           "if old and old != new else position", "if old and old != new else 0",
           ("tests/test_data.py",), "a resumed run repeats the batches it had done this epoch"),
    Mutant("warmup-off-by-one", "w2vcli/training/schedule.py",
           "return (update + 1) / warmup", "return update / warmup",
           ("tests/test_schedule.py",), "the first update runs at learning rate 0"),
    Mutant("int8-quantizes-head-and-projection", "w2vcli/checkpoints/onnx.py",
           "nodes_to_exclude=[products[0], products[-1]] if products else [],", "nodes_to_exclude=[],",
           ("tests/test_onnx.py",), "int8 rounds the feature projection and the CTC head too"),
    Mutant("onnx-normalize-flag-dropped", "w2vcli/checkpoints/onnx.py",
           '"normalize": bool(config.do_normalize),', '"normalize": False,',
           ("tests/test_onnx.py",), "an exported file forgets that its inputs need normalising"),
    Mutant("kernels-switch-ignored", "w2vcli/model/kernels.py",
           "before, _active = _active, on", "before, _active = _active, _active",
           ("tests/test_kernels.py",), "turning the fast paths off does nothing"),
    Mutant("cli-engine-ignored", "w2vcli/cli/transcribe.py",
           "engine=engine, announce", "engine=None, announce",
           FLAG_TESTS, "--engine is accepted and ignored"),
]  # fmt: skip


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def run_pytest(tree: Path, tests: tuple[str, ...]) -> tuple[int | None, float, str]:
    """(exit code or None on timeout, seconds, output) of pytest on `tests` in the copy."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, time.perf_counter() - t0, out
    return p.returncode, time.perf_counter() - t0, p.stdout + p.stderr


def verdict(rc: int | None) -> str:
    return {None: "timeout", 0: "survived", 1: "killed"}.get(rc, f"error (rc {rc})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated mutant names")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--check", action="store_true", help="only check that each old text occurs once")
    ap.add_argument("--show", action="store_true", help="print the tail of each pytest output")
    ap.add_argument("--tests", help="comma-separated tests to run instead of each mutant's own")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    args = ap.parse_args()

    chosen = MUTANTS + more_mutants()
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - {m.name for m in chosen})
        if unknown:
            sys.exit(f"unknown mutant(s): {', '.join(unknown)} (see --list)")
        chosen = [m for m in chosen if m.name in names]
    if args.tests:
        override = tuple(t.strip() for t in args.tests.split(",") if t.strip())
        chosen = [Mutant(m.name, m.file, m.old, m.new, override, m.why) for m in chosen]
    if args.list:
        for m in chosen:
            print(f"{m.name:36} {m.file:40} {m.why}")
        return 0

    stale = [m.name for m in chosen if (ROOT / m.file).read_text(encoding="utf-8").count(m.old) != 1]
    if args.check:
        print(
            f"{len(chosen) - len(stale)} of {len(chosen)} mutants apply"
            + (f"; stale: {', '.join(stale)}" if stale else "")
        )
        return 1 if stale else 0

    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="w2v-mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen if m.name not in stale for t in m.tests))
            rc, seconds, out = run_pytest(tree, tests)
            print(
                f"baseline: {verdict(rc).replace('survived', 'passed')} in {seconds:.1f} s ({len(tests)} test files)"
            )
            if rc != 0:
                print(out[-3000:])
                print("the tests fail without any mutant: fix that first (or pass --no-baseline)")
                return 2
        for m in chosen:
            if m.name in stale:
                rows.append((m.name, "stale", 0.0))
                continue
            path = tree / m.file
            original = path.read_text(encoding="utf-8")
            path.write_text(original.replace(m.old, m.new, 1), encoding="utf-8")
            try:
                rc, seconds, out = run_pytest(tree, m.tests)
            finally:
                path.write_text(original, encoding="utf-8")
            rows.append((m.name, verdict(rc), seconds))
            print(f"  {m.name}: {verdict(rc)} ({seconds:.1f} s)", flush=True)
            if args.show:
                tail = [line for line in out.splitlines() if line.strip()][-12:]
                print("\n".join("      " + line for line in tail))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'mutant':{width}}  {'verdict':10}  seconds")
    for name, v, seconds in rows:
        print(f"{name:{width}}  {v:10}  {seconds:7.1f}")
    killed = sum(v in ("killed", "timeout") for _, v, _ in rows)
    survived = sum(v == "survived" for _, v, _ in rows)
    other = len(rows) - killed - survived
    print(
        f"\ntried {len(rows)}, killed {killed}, survived {survived}"
        + (f", error/stale {other}" if other else "")
    )
    return 1 if survived or other else 0


if __name__ == "__main__":
    sys.exit(main())
