"""A transcript as the model can spell it, for alignment, with the user's own words kept for the output.

Each word of the text (split on whitespace) becomes its spoken form in the model's vocabulary:
Unicode NFKC; numbers read out (`num2words`, which knows dozens of languages: "1984" -> "one
thousand nine hundred and eighty four", "3rd" -> "third", "$1,234" -> "one thousand two hundred
and thirty four dollars", "12%" -> "twelve percent"); each letter in the case the vocabulary has
(a vocabulary with both cases of a letter keeps the text's case, one with a single case gets that
case: `facebook/wav2vec2-base-960h` spells in capitals); other scripts and accents transliterated
(`anyascii`: "café" -> "cafe", "Привет" -> "privet") where the vocabulary lacks them; what is still
unknown (punctuation, symbols, emoji and `:shortcodes:`) dropped. A word left with nothing to spell
cannot be aligned: it gets times between its neighbours and a flag, never zeros.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from w2vcli.decoding.align import STAR
from w2vcli.errors import UsageError

# An amount: a currency sign, digits (English groups thousands with commas: "1,234,567"), a decimal
# part, and an ordinal suffix or a percent sign.
_AMOUNT = r"([$£€¥])?(\d+(?:[.,]\d+)?)(st|nd|rd|th|%)?"
_AMOUNT_EN = r"([$£€¥])?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(st|nd|rd|th|%)?"
_CURRENCIES = {"$": "USD", "£": "GBP", "€": "EUR", "¥": "JPY"}  # num2words' codes
_PERCENT = {"en": "percent", "fr": "pour cent", "de": "Prozent", "es": "por ciento", "it": "per cento",
            "pt": "por cento", "nl": "procent"}  # fmt: skip
_SHORTCODE = re.compile(r":[\w+-]+:")  # an emoji written as its name (Slack, GitHub: ":tada:")
_NOT_SPOKEN = {"So", "Sk"}  # Unicode categories read as nothing: emoji, pictographs, their modifiers


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


def _currency(value: int | float, code: str, language: str) -> str:
    """An amount of money read out ("one dollar, fifty cents"); raises when num2words lacks it."""
    from num2words import CONVERTER_CLASSES, num2words

    if isinstance(value, float):
        return num2words(value, lang=language, to="currency", currency=code)
    one, many = CONVERTER_CLASSES[language].CURRENCY_FORMS[code][0]
    return f"{num2words(value, lang=language)} {one if value == 1 else many}"


def _numbers(text: str, language: str) -> str:
    from num2words import num2words

    english = language.split("_")[0] == "en"

    def spell(m: re.Match) -> str:
        sign, number, suffix = m.group(1), m.group(2), (m.group(3) or "").lower()
        if english:
            number = number.replace(",", "")  # "1,234": commas group thousands
        value = float(number.replace(",", ".")) if re.search(r"[.,]", number) else int(number)
        if suffix == "%":
            out = f"{num2words(value, lang=language)} {_PERCENT.get(language.split('_')[0], '')}"
        elif suffix:
            try:
                out = num2words(value, lang=language, to="ordinal")
            except NotImplementedError:
                out = num2words(value, lang=language)
        elif sign:
            try:
                out = _currency(value, _CURRENCIES[sign], language)
            except (KeyError, NotImplementedError, AttributeError, TypeError):
                out = num2words(value, lang=language)
        else:
            out = num2words(value, lang=language)
        return f" {out} "

    return re.sub(_AMOUNT_EN if english else _AMOUNT, spell, text, flags=re.IGNORECASE)


def _in_case(ch: str, letters: set[str]) -> str:
    """`ch` in the case the vocabulary spells it: as is when the vocabulary has it (a vocabulary with
    both cases keeps the text's), else the other case when the vocabulary has only that one."""
    if ch in letters:
        return ch
    for other in (ch.lower(), ch.upper()):
        if other in letters:
            return other
    return ch


def spoken_form(word: str, letters: set[str], language: str = "en") -> str:
    """The word as the vocabulary's letters can spell it: several words when a number reads as
    several, "" when nothing is left."""
    from anyascii import anyascii

    text = unicodedata.normalize("NFKC", word)
    text = _SHORTCODE.sub(" ", text)
    if any(ch.isdigit() for ch in text):
        try:
            text = _numbers(text, language)
        except NotImplementedError:
            raise UsageError(f"--language {language}: num2words cannot read numbers in it") from None
    out = []
    for ch in text:
        ch = _in_case(ch, letters)
        if ch in letters or ch.isspace():
            out.append(ch)
            continue
        if unicodedata.category(ch) in _NOT_SPOKEN:
            out.append("")
            continue
        out.append("".join(c for c in (_in_case(c, letters) for c in anyascii(ch)) if c in letters))
        if ch in "-‐‑–—/" and not out[-1]:
            out[-1] = " "  # "forty-two", "and/or": word breaks
    return " ".join("".join(out).split())


def prepare(text: str, vocab, language: str = "en") -> list[Word]:
    """The text's words with their spoken forms and tokens."""
    letters = alphabet(vocab)
    words = []
    for raw in text.split():
        spoken = spoken_form(raw, letters, language)
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
