"""Live display for `w2v pretrain` / `w2v finetune`: a progress bar with ETA and current metrics,
warnings and validation lines above it, and a summary with sparklines at the end."""

from __future__ import annotations

import os
from pathlib import Path

import typer

# What the bar shows (metric key, label, format); keys missing from a record are left out.
SHOWN = [
    ("loss", "loss", ".3f"),
    ("accuracy", "acc", ".3f"),
    ("x_chance", "x chance", ".1f"),
    ("code_perplexity", "ppl", ".0f"),
    ("temperature", "temp", ".2f"),
    ("lr", "lr", ".2e"),
    ("audio_seconds_per_s", "audio-s/s", ".1f"),
]
CURVES = ["loss", "accuracy", "x_chance", "code_perplexity", "valid_wer", "valid_cer", "lr"]
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # 128 + signal number, as shells report


def is_main_process() -> bool:
    return int(os.environ.get("RANK", 0)) == 0


def _format(metrics: dict) -> str:
    return "  ".join(
        f"{label} {metrics[key]:{fmt}}"
        for key, label, fmt in SHOWN
        if isinstance(metrics.get(key), (int, float))
    )


class TrainDisplay:
    def __init__(self, title: str) -> None:
        self.title = title
        self.bar = None
        self.started = False

    def __enter__(self) -> TrainDisplay:
        from rich.progress import TextColumn

        from w2vcli.console import progress

        if is_main_process():
            self.bar = progress(TextColumn("{task.fields[info]}"))
            self.bar.__enter__()
            self.task = self.bar.add_task(self.title, total=None, info="starting")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            if exc[0] is not None and not self.started:  # refused before training: the error line alone
                self.bar.live.transient = True
            return self.bar.__exit__(*exc)
        return None

    def prep(self, p) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task,
                description="preparing data",
                completed=p.done,
                total=p.total,
                info=f"{p.seconds / 3600:.2f} h",
            )

    def __call__(self, event) -> None:
        from w2vcli.console import err, warn

        if self.bar is None:
            return
        if event.kind == "start":
            self.started = True
            self.bar.reset(self.task, total=event.max_updates or 100, completed=self._done(event), info="")
            self.bar.update(self.task, description=self.title)
            if event.metrics.get("resumed_from"):
                err.print(f"resuming from {event.metrics['resumed_from']}", markup=False)
        elif event.kind == "log":
            self.bar.update(self.task, completed=self._done(event), info=_format(event.metrics))
        elif event.kind == "warning":
            warn(event.message)
        elif event.kind == "valid":
            m = event.metrics
            err.print(
                f"update {m['update']}: valid WER {m['valid_wer']:.2%}  CER {m['valid_cer']:.2%}  "
                f"loss {m['valid_loss']:.3f}"
            )
        elif event.kind == "best":
            err.print("  [green]new best[/] (saved to best/)")
        elif event.kind in ("checkpoint", "done"):
            self.bar.update(self.task, completed=self._done(event))

    @staticmethod
    def _done(event) -> float:
        """The bar counts updates against an update budget, percent of the budget against a time budget."""
        return event.update if event.max_updates else round(100 * event.progress, 1)


def finish(result, run_dir: Path) -> None:
    """Summary on stderr; the exit code tells scripts why training stopped."""
    from w2vcli.console import err
    from w2vcli.training.metrics import read_metrics, series, sparkline

    if not is_main_process():
        raise typer.Exit(EXIT_CODES.get(result.stop_reason, 0))
    records = read_metrics(run_dir / "metrics.jsonl")
    for key in CURVES:
        _, values = series(records, key)
        if len(values) > 1:
            err.print(f"{key:>16} {sparkline(values, 40)} {values[0]:.4g} -> {values[-1]:.4g}", markup=False)
    health = _health(result.metrics)
    if health:
        err.print(health, markup=False)
    how = {
        "max_updates": "reached --max-updates",
        "max_minutes": "reached --max-minutes",
        "SIGINT": "interrupted",
        "SIGTERM": "terminated",
        "requested": "stopped",
    }[result.stop_reason]
    err.print(f"{how} at update {result.update}; checkpoint {result.checkpoint}", markup=False)
    if result.best:
        err.print(
            f"best valid WER {result.best['wer']:.2%} (CER {result.best['cer']:.2%}) at update "
            f"{result.best['update']}: {run_dir / 'best'}",
            markup=False,
        )
    if result.stop_reason in EXIT_CODES:
        err.print("run the same command again to resume", markup=False)
    raise typer.Exit(EXIT_CODES.get(result.stop_reason, 0))


def _health(metrics: dict) -> str:
    """Pretraining's verdict in one line: is it learning? (accuracy against guessing, codebook use)."""
    if "health" not in metrics:
        return ""
    advice = {"collapsed": ": lower --lr or raise --diversity-weight", "at chance": ": not learning yet"}
    chance = metrics["accuracy"] / metrics["x_chance"] if metrics.get("x_chance") else 0.0
    perplexity = (
        f"; code perplexity {metrics['code_perplexity']:.0f}" if "code_perplexity" in metrics else ""
    )  # BEST-RQ's codes are fixed: no perplexity to watch
    return (
        f"masked-frame accuracy {metrics['accuracy']:.3f} = {metrics['x_chance']:.1f}x chance ({chance:.4f})"
        f"{perplexity}: {metrics['health']}{advice.get(metrics['health'], '')}"
    )
