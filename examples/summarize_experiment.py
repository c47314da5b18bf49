"""Print (and write EXP_DIR/summary.json) the outcome of examples/experiment.sh.

    python examples/summarize_experiment.py exp

For each arm: test WER/CER, updates and minutes trained; for pretraining: masked-frame accuracy
against chance at the start, after 10 minutes and at the end.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def _elapsed(rows: list[dict]) -> list[tuple[dict, float]]:
    """Each row with the training seconds up to it, from the logged throughput (sum of update intervals)."""
    last, total, out = 0, 0.0, []
    for r in rows:
        if r.get("updates_per_s"):
            total += (r["update"] - last) / r["updates_per_s"]
        last = r["update"]
        out.append((r, total))
    return out


def _minutes(rows: list[dict]) -> float:
    timed = _elapsed(rows)
    return timed[-1][1] / 60 if timed else 0.0


def pretraining_summary(run: Path) -> dict | None:
    rows = [r for r in _metrics(run) if "accuracy" in r]
    if not rows:
        return None
    settings = json.loads((run / "train.json").read_text()) if (run / "train.json").exists() else {}
    k = settings.get("model", {}).get("num_negatives", 100)
    at10 = next((r for r, seconds in _elapsed(rows) if seconds >= 600), None)
    tail = rows[-5:]
    return {
        "updates": rows[-1]["update"],
        "minutes": round(_minutes(rows), 1),
        "chance_accuracy": round(1 / (k + 1), 4),
        "chance_loss_nats": round(math.log(k + 1), 3),
        "accuracy_first": rows[0]["accuracy"],
        "accuracy_at_10_min": (at10 or rows[-1])["accuracy"],
        "accuracy_end": round(sum(r["accuracy"] for r in tail) / len(tail), 4),
        "contrastive_end": round(sum(r["contrastive"] for r in tail) / len(tail), 3),
        "code_perplexity_end": rows[-1]["code_perplexity"],
    }


def _score_summary(path: Path) -> dict:
    """WER and CER of a `w2v score --json` report, and its `--by` groups (the speech engines) if any."""
    score = json.loads(path.read_text())
    summary = {"wer": round(score["wer"], 4), "cer": round(score["cer"], 4)}
    if score.get("groups"):
        summary["by_group"] = {
            g["group"]: {"wer": round(g["wer"], 4), "cer": round(g["cer"], 4), "utterances": g["sentences"]}
            for g in score["groups"]
        }
    return summary


def arm_summary(out: Path, arm: str) -> dict:
    rows = _metrics(out / arm)
    summary = {
        **_score_summary(out / f"{arm}-test-score.json"),
        "updates": rows[-1]["update"] if rows else 0,
        "minutes": round(_minutes(rows), 1),
    }
    lm = out / f"{arm}-test-lm-score.json"
    if lm.exists():  # word-LM decoding with the setting chosen on the validation set
        choice = json.loads((out / f"{arm}-lm-choice.json").read_text())
        summary["lm"] = {
            **_score_summary(lm),
            "decoding": choice["decoding"],
            "valid_cer": choice["valid_cer"],
        }
    return summary


def _relative(p: dict, s: dict) -> float | None:
    return round(1 - p["cer"] / s["cer"], 4) if s["cer"] else None


def _by_engine(name: str, r: dict) -> None:
    if r.get("by_group"):
        print(
            f"{name:>22} CER by engine: "
            + ", ".join(f"{g} {v['cer']:.1%} ({v['utterances']} utts)" for g, v in r["by_group"].items())
        )


def main(out: Path) -> None:
    summary = {
        "pretraining": pretraining_summary(out / "pretrain"),
        "pretrained": arm_summary(out, "finetune"),
        "scratch": arm_summary(out, "scratch"),
    }
    p, s = summary["pretrained"], summary["scratch"]
    summary["relative_cer_reduction"] = _relative(p, s)
    if "lm" in p and "lm" in s:
        summary["relative_cer_reduction_lm"] = _relative(p["lm"], s["lm"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if summary["pretraining"]:
        t = summary["pretraining"]
        print(
            f"pretraining: {t['updates']} updates in {t['minutes']} min; masked-frame accuracy "
            f"{t['accuracy_at_10_min']:.3f} after 10 min, {t['accuracy_end']:.3f} at the end "
            f"(chance {t['chance_accuracy']:.3f})"
        )
    print(f"{'':>22} {'WER':>7} {'CER':>7} {'updates':>8} {'minutes':>8}")
    for name, r in (("pretrained + finetune", p), ("from scratch", s)):
        print(f"{name:>22} {r['wer']:7.1%} {r['cer']:7.1%} {r['updates']:8d} {r['minutes']:8.1f}")
    for name, r in (("pretrained + finetune", p), ("from scratch", s)):
        _by_engine(name, r)
    if summary["relative_cer_reduction"] is not None:
        print(f"pretraining cuts CER by {summary['relative_cer_reduction']:.0%} relative")
    if "relative_cer_reduction_lm" in summary:
        print("with the word LM, its weights chosen on the validation set per arm:")
        for name, r in (("pretrained + finetune", p["lm"]), ("from scratch", s["lm"])):
            print(f"{name:>22} {r['wer']:7.1%} {r['cer']:7.1%}  ({r['decoding']})")
        for name, r in (("pretrained + finetune", p["lm"]), ("from scratch", s["lm"])):
            _by_engine(name, r)
        if summary["relative_cer_reduction_lm"] is not None:
            print(f"pretraining cuts CER by {summary['relative_cer_reduction_lm']:.0%} relative with the LM")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "exp"))
