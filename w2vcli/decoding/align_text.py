"""A transcript as the model can spell it, for alignment, with the user's own words kept for the output.

Each word of the text (split on whitespace) becomes its spoken form in the model's vocabulary:
Unicode NFKC, lower case when the vocabulary has no capitals, numbers read out (`num2words`,
which knows dozens of languages: "1984" -> "one thousand nine hundred and eighty four", "3rd"
-> "third"), other scripts and accents transliterated (`anyascii`: "café" -> "cafe", "Привет" ->
"privet") where the vocabulary lacks them, and what is still unknown (punctuation, symbols)
dropped. A word left with nothing to spell cannot be aligned: it gets times between its
neighbours and a flag, never zeros.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from w2vcli.decoding.align import STAR
from w2vcli.errors import UsageError

_NUMBER = re.compile(r"(\d+(?:[.,]\d+)?)(st|nd|rd|th)?", re.IGNORECASE)


@dataclass
class Word:
    text: str  # as the user wrote it
    spoken: str  # what the model is asked to find ("" when nothing of it can be spelt)
    tokens: list[int] = field(default_factory=list)


def alphabet(vocab) -> set[str]:
    """The characters a vocabulary can spell."""
    if hasattr(vocab, "characters"):
        return set(vocab.characters())
    return {t for t in vocab.tokens if len(t) == 1 and t != getattr(vocab, "word_separator", None)}


def _numbers(text: str, language: str) -> str:
    from num2words import num2words

    def spell(m: re.Match) -> str:
        number, suffix = m.group(1), m.group(2)
        value = float(number.replace(",", ".")) if re.search(r"[.,]", number) else int(number)
        try:
            out = num2words(value, lang=language, to="ordinal" if suffix else "cardinal")
        except NotImplementedError:
            out = num2words(value, lang=language)
        return f" {out} "

    return _NUMBER.sub(spell, text)


def spoken_form(word: str, letters: set[str], language: str = "en", lower: bool = True) -> str:
    """The word as the vocabulary's letters can spell it: several words when a number reads as
    several, "" when nothing is left."""
    from anyascii import anyascii

    text = unicodedata.normalize("NFKC", word)
    if any(ch.isdigit() for ch in text):
        try:
            text = _numbers(text, language)
        except NotImplementedError:
            raise UsageError(f"--language {language}: num2words cannot read numbers in it") from None
    if lower:
        text = text.lower()
    out = []
    for ch in text:
        if ch in letters or ch.isspace():
            out.append(ch)
            continue
        ascii_ = anyascii(ch)
        ascii_ = ascii_.lower() if lower else ascii_
        out.append("".join(c for c in ascii_ if c in letters) if ascii_ else "")
        if ch in "-‐‑–—/" and not out[-1]:
            out[-1] = " "  # "forty-two", "and/or": word breaks
    return " ".join("".join(out).split())


def prepare(text: str, vocab, language: str = "en") -> list[Word]:
    """The text's words with their spoken forms and tokens."""
    letters = alphabet(vocab)
    lower = not any(c.isupper() for c in letters)
    words = []
    for raw in text.split():
        spoken = spoken_form(raw, letters, language, lower)
        words.append(Word(raw, spoken, vocab.encode(spoken) if spoken else []))
    return words


def token_sequence(words: list[Word], vocab, star: bool = True) -> tuple[list[int], list[int]]:
    """The tokens to align: each spelt word's tokens, the vocabulary's word separator between words
    (when it has one), and with `star` a wildcard at the start, between words and at the end.
    Returns (tokens, owner: the word index of each token or -1)."""
    sep = getattr(vocab, "index", {}).get(getattr(vocab, "word_separator", None))
    tokens, owner = [], []
    if star:
        tokens.append(STAR)
        owner.append(-1)
    spelt = [i for i, w in enumerate(words) if w.tokens]
    for n, i in enumerate(spelt):
        if n:
            if sep is not None:
                tokens.append(sep)
                owner.append(-1)
            if star:
                tokens.append(STAR)
                owner.append(-1)
        tokens += words[i].tokens
        owner += [i] * len(words[i].tokens)
    if star and spelt:
        tokens.append(STAR)
        owner.append(-1)
    return tokens, owner
