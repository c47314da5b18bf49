"""The label-efficiency study's bookkeeping (examples/experiment.sh): its data sets and its report.

    python examples/study.py split PREP OUT      # manifests of each arm from one `w2v prep` output
    python examples/study.py summarize EXP       # table, EXP/summary.json and EXP/cer.png

`split` takes the prep of the study set (`make_data.py --study`: labelled/, dev/, test-seen/,
test-unseen/, all prepared together so that they share one vocabulary) and writes
OUT/l10/ (train: the 10 labelled minutes, valid: dev), OUT/l1/ (train: the first minute of them,
valid: dev), OUT/test-seen.jsonl and OUT/test-unseen.jsonl (and OUT/test-seen-noisy.jsonl when the
set has that folder: test-seen with noise at 10 dB SNR), each with absolute audio paths. The
first minute is taken in file order: make_data.py lets the voices take turns, so it has every voice.

`summarize` reads what experiment.sh leaves in EXP: the runs ARM-lN/ (metrics.jsonl), and for each
arm and test set the `w2v score --json` reports ARM-lN-TEST[-lm]-score.json and the LM choice
ARM-lN-lm-choice.json. It prints the table (greedy and with the word LM), the relative CER
reductions and the seen/unseen ratio, and draws CER against labelled minutes (matplotlib, the
`examples` extra).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ARMS = ("pretrained", "scratch")
TESTS = ("test-seen", "test-unseen", "test-seen-noisy")  # the last: test-seen mixed with noise at 10 dB SNR
REQUIRED = TESTS[:2]
LABELLED = {"l1": 1.0, "l10": 10.0}  # name -> labelled minutes


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def split(prep: Path, out: Path) -> dict[str, int]:
    """Write the study's manifests from one prep output; returns utterances per manifest."""
    rows = _read(prep / "train.jsonl") + (
        _read(prep / "valid.jsonl") if (prep / "valid.jsonl").exists() else []
    )
    by_split: dict[str, list[dict]] = {}
    for r in rows:
        r = {**r, "audio": str((prep / r["audio"]).resolve())}
        by_split.setdefault(r["id"].split("/", 1)[0], []).append(r)
    tests = sorted(s for s in by_split if s.startswith("test"))  # study: TESTS; --heldout: test, test-noisy
    wanted = ("labelled", "dev", *(REQUIRED if set(REQUIRED) & set(tests) else ()))  # a study set needs both
    missing = [s for s in wanted if s not in by_split] + ([] if tests else ["test*"])
    if missing:
        raise SystemExit(f"{prep}: no {', '.join(missing)} utterances: prep the set's folders together")
    for rs in by_split.values():
        rs.sort(key=lambda r: r["id"])  # make_data.py numbers files in the order the voices took turns
    labelled, first, seconds = by_split["labelled"], [], 0.0
    for r in labelled:
        if seconds >= 60.0:
            break
        first.append(r)
        seconds += r["duration"]
    counts = {}
    for name, train in (("l10", labelled), ("l1", first)):
        (out / name).mkdir(parents=True, exist_ok=True)
        _write(out / name / "train.jsonl", train)
        _write(out / name / "valid.jsonl", by_split["dev"])
        shutil.copy(prep / "vocab.json", out / name / "vocab.json")
        counts[name] = len(train)
    for test in tests:
        _write(out / f"{test}.jsonl", by_split[test])
        counts[test] = len(by_split[test])
    return counts


def _minutes(run: Path) -> tuple[int, float]:
    """(updates, training minutes) of a run, from the throughput logged with each metrics record."""
    path = run / "metrics.jsonl"
    rows = [r for r in _read(path) if "update" in r] if path.exists() else []
    last, seconds = 0, 0.0
    for r in rows:
        if r.get("updates_per_s"):
            seconds += (r["update"] - last) / r["updates_per_s"]
        last = r["update"]
    return last, seconds / 60


def _score(path: Path) -> dict | None:
    if not path.exists():
        return None
    s = json.loads(path.read_text())
    out = {"cer": s["cer"], "wer": s["wer"]}
    if s.get("groups"):
        out["by_group"] = {g["group"]: round(g["cer"], 4) for g in s["groups"]}
    return out


def collect(exp: Path) -> dict:
    runs = {}
    for arm in ARMS:
        for lab, minutes in LABELLED.items():
            name = f"{arm}-{lab}"
            updates, trained = _minutes(exp / name)
            run = {"arm": arm, "labelled_minutes": minutes, "updates": updates, "minutes": round(trained, 1)}
            for test in TESTS:
                run[test] = {
                    "greedy": _score(exp / f"{name}-{test}-score.json"),
                    "lm": _score(exp / f"{name}-{test}-lm-score.json"),
                }
            choice = exp / f"{name}-lm-choice.json"
            if choice.exists():
                run["lm_choice"] = json.loads(choice.read_text())
            runs[name] = run
    return runs


def _relative(p: dict | None, s: dict | None) -> float | None:
    if not p or not s or not s["cer"]:
        return None
    return round(1 - p["cer"] / s["cer"], 4)


def summarize(exp: Path) -> dict:
    runs = collect(exp)
    findings = {}
    for lab in LABELLED:
        for decoding in ("greedy", "lm"):
            for test in TESTS:
                p = runs[f"pretrained-{lab}"][test][decoding]
                s = runs[f"scratch-{lab}"][test][decoding]
                findings[f"{lab}/{decoding}/{test}: pretrained vs scratch"] = _relative(p, s)
            seen = runs[f"pretrained-{lab}"]["test-seen"][decoding]
            unseen = runs[f"pretrained-{lab}"]["test-unseen"][decoding]
            if seen and unseen and seen["cer"]:
                findings[f"{lab}/{decoding}: pretrained unseen / seen CER"] = round(
                    unseen["cer"] / seen["cer"], 3
                )
    summary = {"runs": runs, "findings": findings}
    (exp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    def cell(r: dict | None) -> str:
        return f"{r['cer']:6.1%} {r['wer']:6.1%}" if r else f"{'-':>6} {'-':>6}"

    head = "".join(f" | {t + ' ' + d:>13}" for d in ("greedy", "lm") for t in ("seen", "unseen", "noisy"))
    print(f"{'arm':>10} {'labels':>6} {'updates':>7} {'min':>5}{head}   (CER WER)")
    for r in runs.values():
        cells = "".join(f" | {cell(r[t][d])}" for d in ("greedy", "lm") for t in TESTS)
        print(f"{r['arm']:>10} {r['labelled_minutes']:5.0f}m {r['updates']:7d} {r['minutes']:5.1f}{cells}")
    for key, value in findings.items():
        if value is not None:
            kind = "relative CER reduction" if "vs" in key else "ratio"
            print(f"{key}: {value:.0%} {kind}" if "vs" in key else f"{key}: {value:.2f}")
    _by_voice(runs)
    _plot(runs, exp / "cer.png")
    return summary


def _by_voice(runs: dict) -> None:
    """Greedy CER per voice (`w2v score --by`), one row per voice, one column per run."""
    for test in TESTS:
        groups = {name: (r[test]["greedy"] or {}).get("by_group", {}) for name, r in runs.items()}
        voices = sorted({v for g in groups.values() for v in g})
        if not voices:
            continue
        print(f"greedy CER by voice, {test}:")
        print(f"{'':>28}" + "".join(f"{name:>15}" for name in runs))
        for voice in voices:
            cells = "".join(
                f"{groups[name][voice]:15.1%}" if voice in groups[name] else f"{'-':>15}" for name in runs
            )
            print(f"{voice:>28}{cells}")


def _plot(runs: dict, path: Path) -> None:
    """CER against labelled minutes, both arms, seen (solid), unseen (dashed) and noisy seen (dotted), greedy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install -e '.[examples]')", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for arm, colour in zip(ARMS, ("tab:blue", "tab:orange")):
        for test, style in zip(TESTS, ("-", "--", ":")):
            for decoding, marker in (("greedy", "o"), ("lm", "s")):
                xs, ys = [], []
                for lab, minutes in LABELLED.items():
                    r = runs[f"{arm}-{lab}"][test][decoding]
                    if r:
                        xs.append(minutes)
                        ys.append(100 * r["cer"])
                if xs and decoding == "greedy":
                    ax.plot(xs, ys, style, marker=marker, color=colour, label=f"{arm}, {test[5:]} voices")
    ax.set_xscale("log")
    ax.set_xticks(list(LABELLED.values()), [f"{m:g}" for m in LABELLED.values()])
    ax.set_xlabel("labelled minutes")
    ax.set_ylabel("test CER, greedy (%)")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("15 minutes of fine-tuning: shipped start vs scratch", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "split":
        counts = split(Path(argv[1]), Path(argv[2]))
        print(", ".join(f"{k}: {v} utterances" for k, v in counts.items()), file=sys.stderr)
    elif len(argv) == 2 and argv[0] == "summarize":
        summarize(Path(argv[1]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
