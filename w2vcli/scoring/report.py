"""The result of `w2v score`: per-utterance, per-group and per-system error rates, comparisons between
systems, and their JSON form (what `w2v score --json` writes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from w2vcli.data.text import normalize_text
from w2vcli.scoring import error_rates as scoring
from w2vcli.scoring.error_rates import EditCounts


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
