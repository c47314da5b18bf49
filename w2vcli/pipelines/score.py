"""`w2v score` as a function: reference + hypothesis files in, a `ScoreReport` out.

Several hypothesis files are systems scored on the same utterances; with two or more the
report adds paired-bootstrap confidence intervals and the probability that each later
system improves on each earlier one (Bisani & Ney 2004).
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from w2vcli.errors import UsageError, W2VError
from w2vcli.scoring import error_rates as scoring
from w2vcli.scoring.hypfiles import Entry, read_entries
from w2vcli.scoring.pairing import pair
from w2vcli.scoring.report import (
    Comparison,
    GroupScore,
    Normalization,
    ScoreReport,
    SystemScore,
    UtteranceScore,
)

MISSING_MODES = ("fail", "skip", "empty")


def score(
    ref: str,
    hyps: list[str],
    *,
    normalization: Normalization | None = None,
    missing: str = "fail",
    ref_format: str = "auto",
    hyp_format: str = "auto",
    bootstrap: int | None = None,
    seed: int = 0,
    top_confusions: int = 10,
    group_by: str | None = None,
) -> ScoreReport:
    """Score each hypothesis file against `ref`. bootstrap=None: 1000 resamples when comparing systems, else none.
    group_by: a regular expression; the rates are also broken down by its first capture group (else its
    whole match) in each utterance id, ids it does not match forming the group OTHER_GROUP."""
    if missing not in MISSING_MODES:
        raise UsageError(f"--missing must be one of {', '.join(MISSING_MODES)}, not {missing!r}")
    if not hyps:
        raise UsageError("give at least one hypothesis file after the reference")
    if [ref, *hyps].count("-") > 1:
        raise UsageError("only one of REF and HYP can be '-' (stdin)")
    norm = normalization or Normalization()
    pattern = _group_pattern(group_by)
    refs = _references(ref, ref_format)
    pairings = [pair(refs, read_entries(h, hyp_format), ref, h) for h in hyps]
    found = [[h is not None and h.error is None for _, h in p.pairs] for p in pairings]
    if missing == "fail":
        for path, ok, p in zip(hyps, found, pairings, strict=True):
            _fail_on_missing(path, ok, p.pairs)
    keep = [
        all(col) or missing != "skip" for col in zip(*found, strict=True)
    ]  # skip: the utterances every system has
    if not any(keep):
        raise W2VError(
            f"no utterance of {ref} has a hypothesis in every file; check that ids or audio paths match"
        )
    ref_texts = [norm.apply(r.text) for r in refs]  # once, not once per system
    systems = [
        _system(path, p, keep, ref_texts, norm, top_confusions)
        for path, p in zip(hyps, pairings, strict=True)
    ]
    if pattern is not None:
        _group(systems, pattern)
    n_boot = (1000 if len(systems) > 1 else 0) if bootstrap is None else bootstrap
    comparisons = _bootstrap(systems, n_boot, np.random.default_rng(seed)) if n_boot > 0 else []
    return ScoreReport(ref, norm, missing, systems, comparisons, n_boot, seed, group_by)


OTHER_GROUP = "(other)"


def _group_pattern(group_by: str | None) -> re.Pattern | None:
    if group_by is None:
        return None
    try:
        return re.compile(group_by)
    except re.error as e:
        raise UsageError(f"--by {group_by!r} is not a regular expression: {e}") from None


def _group_key(pattern: re.Pattern, utterance_id: str) -> str:
    m = pattern.search(utterance_id)
    if m is None:
        return OTHER_GROUP
    key = m.group(1) if pattern.groups else m.group(0)
    return key if key is not None else OTHER_GROUP  # an optional group that took no part in the match


def _natural(name: str) -> list:
    """Sort key: digit runs compare as numbers (speaker 2 before speaker 10), OTHER_GROUP last."""
    parts = [(0, int(t), "") if t.isdecimal() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]
    return [name == OTHER_GROUP, *parts]


def _group(systems: list[SystemScore], pattern: re.Pattern) -> None:
    keys = [
        _group_key(pattern, u.id) for u in systems[0].utterances
    ]  # every system scores the same utterances
    if all(k == OTHER_GROUP for k in keys):
        raise W2VError(
            f"--by {pattern.pattern!r} matches no utterance id (e.g. {systems[0].utterances[0].id!r})"
        )
    names = sorted(set(keys), key=_natural)
    for s in systems:
        members: dict[str, list[UtteranceScore]] = {n: [] for n in names}
        for k, u in zip(keys, s.utterances, strict=True):
            members[k].append(u)
        s.groups = [
            GroupScore(n, len(us), scoring.total(u.words for u in us), scoring.total(u.chars for u in us))
            for n, us in members.items()
        ]


def _references(path: str, fmt: str) -> list[Entry]:
    refs = read_entries(path, fmt)
    if not refs:
        raise W2VError(f"{path} has no utterances")
    for e in refs:
        if e.text is None:
            raise W2VError(
                f"{path}:{e.line}: reference {e.name!r} has no 'text'; is this a labelled manifest?"
            )
    return refs


def _fail_on_missing(path: str, found: list[bool], pairs: list[tuple[Entry, Entry | None]]) -> None:
    lost = [r for ok, (r, _) in zip(found, pairs, strict=True) if not ok]
    if lost:
        failed = sum(h is not None for ok, (_, h) in zip(found, pairs, strict=True) if not ok)
        why = f", {failed} of them failed in transcription" if failed else ""
        raise W2VError(
            f"{path}: {len(lost)} of {len(pairs)} references have no hypothesis{why} (e.g. {lost[0].name!r}); "
            "pass --missing skip to score the rest or --missing empty to count them as empty"
        )


def _system(
    path: str, p, keep: list[bool], ref_texts: list[str], norm: Normalization, top: int
) -> SystemScore:
    utts, missing, failed, alignments = [], [], [], []
    for (r, h), k, ref_text in zip(p.pairs, keep, ref_texts, strict=True):
        absent = h is None or h.error is not None
        if absent:
            missing.append(r.name)
            if h is not None:
                failed.append(r.name)
        if not k:
            continue
        if not absent and h.text is None:
            raise W2VError(f"{path}:{h.line}: hypothesis {h.name!r} has no 'text' and no 'error'")
        hyp_text = "" if absent else norm.apply(h.text)
        pairs = scoring.word_alignment(ref_text, hyp_text)
        alignments.append(pairs)
        utts.append(
            UtteranceScore(
                r.name,
                ref_text,
                hyp_text,
                scoring.counts_of(pairs),
                scoring.char_edits(ref_text, hyp_text),
                absent,
            )
        )
    conf = scoring.confusions(alignments, top)
    return SystemScore(path, p.key, utts, missing, failed, [h.name for h in p.extra], conf)


def _bootstrap(systems: list[SystemScore], n: int, rng: np.random.Generator) -> list[Comparison]:
    words = [[u.words for u in s.utterances] for s in systems]
    chars = [[u.chars for u in s.utterances] for s in systems]
    errors = np.array([[c.errors for c in row] for row in words + chars])  # (2S, U)
    lens = np.array([[c.ref_len for c in row] for row in words + chars])
    rates = scoring.bootstrap_rates(errors, lens, n, rng)  # (n, 2S)
    k = len(systems)
    for i, s in enumerate(systems):
        s.wer_ci = scoring.percentile_ci(rates[:, i])
        s.cer_ci = scoring.percentile_ci(rates[:, k + i])
    comparisons = []
    for a, b in itertools.combinations(range(k), 2):
        wa, wb, ca, cb = rates[:, a], rates[:, b], rates[:, k + a], rates[:, k + b]
        comparisons.append(
            Comparison(
                a, b,
                systems[b].wer - systems[a].wer, scoring.percentile_ci(wb - wa), scoring.probability_of_improvement(wa, wb),
                systems[b].cer - systems[a].cer, scoring.percentile_ci(cb - ca), scoring.probability_of_improvement(ca, cb),
            )
        )  # fmt: skip
    return comparisons
