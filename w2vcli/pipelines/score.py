"""`w2v score` as a function: reference + hypothesis files in, a `ScoreReport` out.

Several hypothesis files are systems scored on the same utterances; with two or more the
report adds paired-bootstrap confidence intervals and the probability that each later
system improves on each earlier one (Bisani & Ney 2004).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np

from w2vcli.data.text import normalize_text
from w2vcli.errors import UsageError, W2VError
from w2vcli.scoring import error_rates as scoring
from w2vcli.scoring.error_rates import EditCounts
from w2vcli.scoring.hypfiles import Entry, read_entries
from w2vcli.scoring.pairing import pair

MISSING_MODES = ("fail", "skip", "empty")


@dataclass
class Normalization:
    lowercase: bool = True
    strip_punctuation: bool = True

    @property
    def enabled(self) -> bool:
        return self.lowercase or self.strip_punctuation

    def apply(self, text: str) -> str:
        if self.enabled:
            return normalize_text(text, lowercase=self.lowercase, strip_punctuation=self.strip_punctuation)
        return " ".join(text.split())  # whitespace is always collapsed: WER tokens are whitespace-split

    def describe(self) -> str:
        if not self.enabled:
            return "none (whitespace collapsed only)"
        steps = ["NFKC"] + ["lowercase"] * self.lowercase
        steps += ["punctuation removed (apostrophes kept)"] * self.strip_punctuation
        return ", ".join(steps + ["whitespace collapsed"])

    def to_json(self) -> dict:
        return {
            "unicode": "NFKC" if self.enabled else None,
            "lowercase": self.lowercase,
            "strip_punctuation": self.strip_punctuation,
            "collapse_whitespace": True,
        }


@dataclass
class UtteranceScore:
    id: str
    ref: str  # normalised, as scored
    hyp: str
    words: EditCounts
    chars: EditCounts
    missing: bool = False  # no hypothesis (absent or failed), scored as empty

    def alignment(self) -> list[tuple[str, str | None, str | None]]:
        return scoring.word_alignment(self.ref, self.hyp)

    def to_json(self) -> dict:
        d = {"id": self.id, "ref": self.ref, "hyp": self.hyp, **_rates_json(self.words, self.chars)}
        if self.missing:
            d["missing"] = True
        return d


@dataclass
class GroupScore:
    """One group of `--by`: the utterances whose ids gave the same key."""

    name: str
    sentences: int
    words: EditCounts
    chars: EditCounts

    def to_json(self) -> dict:
        return {"group": self.name, "sentences": self.sentences, **_rates_json(self.words, self.chars)}


@dataclass
class SystemScore:
    hyp_path: str
    key: str  # what references and hypotheses were joined on: "id" or "audio"
    utterances: list[UtteranceScore]
    missing: list[str]  # reference ids without a hypothesis (absent or failed)
    failed: list[str]  # the subset whose hypothesis carried an `error`
    extra: list[str]  # hypotheses that match no reference
    confusions: list[tuple[str | None, str | None, int]]
    words: EditCounts = field(init=False)
    chars: EditCounts = field(init=False)
    wer_ci: tuple[float, float] | None = None
    cer_ci: tuple[float, float] | None = None
    groups: list[GroupScore] = field(default_factory=list)  # with `group_by`, in the order of their names

    def __post_init__(self) -> None:
        self.words = scoring.total(u.words for u in self.utterances)
        self.chars = scoring.total(u.chars for u in self.utterances)

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    @property
    def ser(self) -> float:
        return scoring.sentence_error_rate([u.words for u in self.utterances])

    def worst(self, n: int) -> list[UtteranceScore]:
        """The n utterances with the most word errors (then the highest WER), worst first."""
        return sorted(self.utterances, key=lambda u: (-u.words.errors, -u.words.rate))[:n]


@dataclass
class Comparison:
    a: int  # index into ScoreReport.systems
    b: int
    delta_wer: float  # WER(b) - WER(a); negative means b is better
    delta_wer_ci: tuple[float, float]
    p_improvement_wer: float  # share of paired resamples where b's WER < a's
    delta_cer: float
    delta_cer_ci: tuple[float, float]
    p_improvement_cer: float


@dataclass
class ScoreReport:
    ref_path: str
    normalization: Normalization
    missing_mode: str
    systems: list[SystemScore]
    comparisons: list[Comparison]
    bootstrap: int
    seed: int
    group_by: str | None = None

    def to_json(self) -> dict:
        """One system: its totals at the top level. Several: `systems` (each in that shape) and `comparisons`."""
        common = {
            "ref": self.ref_path,
            "normalization": self.normalization.to_json(),
            "missing_mode": self.missing_mode,
        }
        if self.bootstrap:
            common["bootstrap"] = {"resamples": self.bootstrap, "seed": self.seed, "level": 0.95}
        if self.group_by is not None:
            common["group_by"] = self.group_by
        if len(self.systems) == 1:
            return {**_system_json(self.systems[0]), **common}
        return {
            **common,
            "systems": [_system_json(s) for s in self.systems],
            "comparisons": [_comparison_json(self, c) for c in self.comparisons],
        }


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


def _rates_json(words: EditCounts, chars: EditCounts) -> dict:
    """WER, CER and both levels' edit counts, as every level of the report writes them."""
    return {
        "wer": words.rate,
        "cer": chars.rate,
        **_counts_json(words, "", "ref_words", "hyp_words"),
        **_counts_json(chars, "char_", "ref_chars", "hyp_chars"),
    }


def _counts_json(c: EditCounts, prefix: str, ref_key: str, hyp_key: str) -> dict:
    return {
        f"{prefix}substitutions": c.substitutions,
        f"{prefix}deletions": c.deletions,
        f"{prefix}insertions": c.insertions,
        f"{prefix}hits": c.hits,
        ref_key: c.ref_len,
        hyp_key: c.hyp_len,
    }


def _system_json(s: SystemScore) -> dict:
    d = {"hyp": s.hyp_path, **_rates_json(s.words, s.chars)}
    d["sentences"] = len(s.utterances)
    d["sentence_errors"] = sum(u.words.errors > 0 for u in s.utterances)
    d["ser"] = s.ser
    if s.wer_ci is not None:
        d["wer_ci"], d["cer_ci"] = list(s.wer_ci), list(s.cer_ci)
    d.update(joined_on=s.key, missing=s.missing, failed=s.failed, extra=s.extra)
    d["confusions"] = [{"ref": r, "hyp": h, "count": n} for r, h, n in s.confusions]
    if s.groups:
        d["groups"] = [g.to_json() for g in s.groups]
    d["utterances"] = [u.to_json() for u in s.utterances]
    return d


def _comparison_json(report: ScoreReport, c: Comparison) -> dict:
    return {
        "a": report.systems[c.a].hyp_path,
        "b": report.systems[c.b].hyp_path,
        "delta_wer": c.delta_wer,
        "delta_wer_ci": list(c.delta_wer_ci),
        "p_b_better_wer": c.p_improvement_wer,
        "delta_cer": c.delta_cer,
        "delta_cer_ci": list(c.delta_cer_ci),
        "p_b_better_cer": c.p_improvement_cer,
    }
