"""What the CLI prints for errors, warnings and pretraining health: exact text."""

from __future__ import annotations

from rich.console import Console

from w2vcli import console
from w2vcli.cli._train_display import _health


def test_errors_and_warnings_keep_bracketed_text(monkeypatch):
    recorder = Console(record=True, width=200, color_system=None)
    monkeypatch.setattr(console, "err", recorder)
    console.error("pip install 'w2vcli[listen]'")
    console.warn("skipped data/[draft]/a.wav")
    assert recorder.export_text() == (
        "error: pip install 'w2vcli[listen]'\nwarning: skipped data/[draft]/a.wav\n"
    )


def test_health_line_for_each_objective():
    contrastive = {"accuracy": 0.26, "x_chance": 5.46, "code_perplexity": 94.4, "health": "learning"}
    assert _health(contrastive) == (
        "masked-frame accuracy 0.260 = 5.5x chance (0.0476); code perplexity 94: learning"
    )
    best_rq = {"accuracy": 0.1833, "x_chance": 187.7, "health": "learning"}  # fixed codes: no perplexity
    assert _health(best_rq) == "masked-frame accuracy 0.183 = 187.7x chance (0.0010): learning"
    assert _health({"loss": 1.0}) == ""
