"""Word n-gram language models for CTC beam search.

A model is anything with `initial_state()` and `score(state, word) -> (logp, new_state)`,
logp in natural log; the sentence end is scored as the word `</s>`. `ArpaLM` reads ARPA text
files in pure Python (exact Katz backoff, like KenLM's query); `KenLM` wraps the optional
`kenlm` module, which is also the only way to read KenLM binary files. A `Lexicon` restricts the
search to known words (spelt as the lexicon spells them), with or without an LM.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path
from typing import Any, Protocol

from w2vcli.errors import W2VError

LN10 = math.log(10.0)
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_MISSING_UNK_LOG10 = -100.0  # what KenLM substitutes when an ARPA file has no <unk>


class LanguageModel(Protocol):
    def initial_state(self) -> Any: ...

    def score(self, state: Any, word: str) -> tuple[float, Any]: ...


class ArpaLM:
    """An ARPA back-off n-gram model; a state is the tuple of context words that still matter."""

    def __init__(self, probs: dict[tuple[str, ...], tuple[float, float]], order: int):
        self.probs = probs  # ngram -> (log10 prob, log10 backoff)
        self.order = order
        unk = probs.get((UNK,))
        self.unk_log10 = unk[0] if unk else _MISSING_UNK_LOG10

    @classmethod
    def load(cls, path: str | os.PathLike) -> ArpaLM:
        probs: dict[tuple[str, ...], tuple[float, float]] = {}
        order, n = 0, 0
        opener = gzip.open if str(path).endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                for lineno, raw in enumerate(f, 1):
                    line = raw.strip()
                    if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                        continue
                    if line.startswith("\\") and line.endswith("-grams:"):
                        n = int(line[1:].split("-")[0])
                        order = max(order, n)
                        continue
                    fields = line.split()
                    if n == 0 or len(fields) < n + 1:
                        raise W2VError(f"{path}:{lineno}: not an ARPA n-gram line: {line[:60]!r}")
                    backoff = float(fields[n + 1]) if len(fields) > n + 1 else 0.0
                    probs[tuple(fields[1 : n + 1])] = (float(fields[0]), backoff)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise W2VError(f"cannot read ARPA language model {path}: {e}") from None
        if order == 0:
            raise W2VError(f"{path} has no n-grams; is it an ARPA file?")
        return cls(probs, order)

    def initial_state(self) -> tuple[str, ...]:
        return (BOS,)

    def log10_prob(self, context: tuple[str, ...], word: str) -> float:
        """log10 p(word | context): the longest known n-gram, plus the backoffs of the contexts skipped."""
        if (word,) not in self.probs:
            word = UNK
        total = 0.0
        for i in range(len(context) + 1):
            hit = self.probs.get(context[i:] + (word,))
            if hit is not None:
                return total + hit[0]
            total += self.probs.get(context[i:], (0.0, 0.0))[1]
        return total + self.unk_log10  # only reached for <unk> missing from the file

    def score(self, state: tuple[str, ...], word: str) -> tuple[float, tuple[str, ...]]:
        logp = self.log10_prob(state, word) * LN10
        if (word,) not in self.probs:
            word = UNK
        ctx = (state + (word,))[-(self.order - 1) :] if self.order > 1 else ()
        # A context absent from the model backs off for free, so dropping it keeps scores exact and
        # lets beams whose histories differ only there share a state.
        while ctx and ctx not in self.probs:
            ctx = ctx[1:]
        return logp, ctx


class KenLM:
    """A `kenlm.Model` (ARPA or binary) behind the `LanguageModel` protocol."""

    def __init__(self, path: str | os.PathLike):
        import kenlm

        try:
            self.model = kenlm.Model(str(path))
        except (OSError, RuntimeError) as e:
            raise W2VError(f"cannot load language model {path}: {e}") from None
        self._kenlm = kenlm

    def initial_state(self):
        state = self._kenlm.State()
        self.model.BeginSentenceWrite(state)
        return state

    def score(self, state, word: str):
        out = self._kenlm.State()
        return self.model.BaseScore(state, word, out) * LN10, out


class Lexicon:
    """The words a beam may spell: every prefix of one of them may grow, every finished word must be one."""

    def __init__(self, words):
        self.words = frozenset(w for w in words if w and w not in (BOS, EOS, UNK))
        if not self.words:
            raise W2VError("the lexicon has no words")
        self.prefixes = frozenset(w[:k] for w in self.words for k in range(1, len(w) + 1))

    @classmethod
    def from_arpa(cls, lm: ArpaLM) -> Lexicon:
        """The LM's unigrams."""
        return cls(ngram[0] for ngram in lm.probs if len(ngram) == 1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Lexicon:
        """An ARPA file (its unigrams) or a word list: the first field of each line (so a
        "word  w o r d |" lexicon file works too)."""
        path = Path(path)
        if not path.is_file():
            raise W2VError(f"lexicon not found: {path}")
        if _is_arpa(path):
            return cls.from_arpa(ArpaLM.load(path))
        try:
            with open(path, encoding="utf-8") as f:
                return cls(line.split()[0] for line in f if line.strip())
        except (OSError, UnicodeDecodeError) as e:
            raise W2VError(f"cannot read lexicon {path}: {e}") from None


class PrefixTrie:
    """Beam-search prefixes as a trie, so equal prefixes are one node (merged) and extending is O(1).

    Each node also carries what the LM made of its words: LM state, bonus (lm_weight x LM log-prob +
    word_score per word), unfinished word. `table[c]` is (text, starts a word) or None for tokens that
    are not text; a word is scored when the next word starts and at the end. With a lexicon, a prefix
    that leaves it gets bonus -inf, so the beam drops it.
    """

    def __init__(
        self,
        table,
        lm: LanguageModel | None,
        lm_weight: float,
        word_score: float,
        lexicon: Lexicon | None = None,
    ):
        self.table, self.lm, self.lm_weight, self.word_score = table, lm, lm_weight, word_score
        self.lexicon = lexicon
        self.parent, self.token = [-1], [-1]
        self.lm_state = [lm.initial_state() if lm is not None else None]
        self.bonus, self.word = [0.0], [""]
        self.children: dict[tuple[int, int], int] = {}
        self.cache: dict = {}  # (LM state, word) -> (logp, new state)

    def _finish_word(self, node: int, word: str):
        """Bonus and LM state after completing `word` on top of `node`'s words."""
        state = self.lm_state[node]
        if not word:
            return self.bonus[node], state
        if self.lexicon is not None and word not in self.lexicon.words:
            return -math.inf, state
        bonus = self.bonus[node] + self.word_score
        if self.lm is not None:
            key = (state, word)
            if key not in self.cache:
                self.cache[key] = self.lm.score(state, word)
            logp, state = self.cache[key]
            bonus += self.lm_weight * logp
        return bonus, state

    def _extend(self, node: int, c: int):
        """(bonus, LM state, unfinished word) of `node`'s prefix followed by token c."""
        entry, word = self.table[c], self.word[node]
        if entry is None:
            return self.bonus[node], self.lm_state[node], word
        text, starts = entry
        grown = text if starts else word + text
        if self.lexicon is not None and grown and grown not in self.lexicon.prefixes:
            return -math.inf, self.lm_state[node], grown
        if starts:
            return *self._finish_word(node, word), text
        return self.bonus[node], self.lm_state[node], grown

    def key(self, node: int, c: int):
        """The node of prefix + c if it exists, else (node, c): only survivors of pruning become nodes."""
        return self.children.get((node, c), (node, c))

    def bonus_of(self, key) -> float:
        if isinstance(key, int):
            return self.bonus[key]
        entry = self.table[key[1]]
        if entry is None or not (entry[1] or self.lexicon is not None):
            return self.bonus[key[0]]  # only a word start or a lexicon check changes the bonus
        return self._extend(*key)[0]

    def node(self, key) -> int:
        if isinstance(key, int):
            return key
        bonus, state, word = self._extend(*key)
        self.children[key] = len(self.parent)
        self.parent.append(key[0])
        self.token.append(key[1])
        self.lm_state.append(state)
        self.bonus.append(bonus)
        self.word.append(word)
        return len(self.parent) - 1

    def final_bonus(self, node: int) -> float:
        """Complete the last word and end the sentence."""
        bonus, state = self._finish_word(node, self.word[node])
        if self.lm is not None:
            bonus += self.lm_weight * self.lm.score(state, EOS)[0]
        return bonus

    def ids(self, node: int) -> list[int]:
        out = []
        while node > 0:
            out.append(self.token[node])
            node = self.parent[node]
        return out[::-1]


def _is_arpa(path: Path) -> bool:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise W2VError(f"cannot read language model {path}: {e}") from None
    return head.lstrip().startswith(b"\\data\\")


def load_lm(path: str | os.PathLike) -> LanguageModel:
    """ARPA (optionally .gz) or KenLM binary; uses `kenlm` when installed, else the pure-Python reader."""
    path = Path(path)
    if not path.is_file():
        raise W2VError(f"language model not found: {path}")
    try:
        import kenlm  # noqa: F401
    except ImportError:
        if not _is_arpa(path):
            raise W2VError(
                f"{path} is a binary KenLM model: install the kenlm module (pip install 'w2vcli[lm]') or pass an ARPA file"
            ) from None
        return ArpaLM.load(path)
    if path.suffix == ".gz":  # kenlm reads gzip only when built with zlib; our reader always can
        return ArpaLM.load(path)
    return KenLM(path)
