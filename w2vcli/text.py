"""Text side of CTC: normalisation and vocabularies.

A character vocabulary is stored as a Hugging Face style `vocab.json` (token -> id):
`<pad>` = 0 is the CTC blank, then `<s>`, `</s>`, `<unk>`, `|` (the word separator), then characters.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from w2vcli.errors import W2VError

PAD, BOS, EOS, UNK, WORD_SEP = "<pad>", "<s>", "</s>", "<unk>", "|"
SPECIALS = (PAD, BOS, EOS, UNK, WORD_SEP)
VOCAB_FILE = "vocab.json"

_KEEP_PUNCT = {"'"}  # apostrophes are part of words ("don't")


def normalize_text(text: str, lowercase: bool = True, strip_punctuation: bool = True) -> str:
    """NFKC, optional case folding and punctuation removal (apostrophes kept), single spaces."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = "".join(
            " " if unicodedata.category(c).startswith(("P", "S")) and c not in _KEEP_PUNCT else c for c in text
        )
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class Vocabulary:
    """Character vocabulary; `tokens[i]` is the token with id i, `tokens[0]` the CTC blank."""

    tokens: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise W2VError("vocabulary has duplicate tokens")

    blank_id = 0
    word_separator = WORD_SEP

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_texts(cls, texts) -> Vocabulary:
        chars = sorted({c for t in texts for c in t if c != " "})
        return cls(list(SPECIALS) + [c for c in chars if c not in SPECIALS])

    @property
    def unk_id(self) -> int:
        return self.index.get(UNK, self.blank_id)

    def encode(self, text: str) -> list[int]:
        """Characters to ids; a space becomes the word separator, an unknown character `<unk>`."""
        sep = self.index.get(WORD_SEP)
        ids = []
        for c in text:
            if c == " " and sep is not None:
                ids.append(sep)
            else:
                ids.append(self.index.get(c, self.unk_id))
        return ids

    def unknown_chars(self, text: str) -> set[str]:
        return {c for c in text if c != " " and c not in self.index}

    def decode(self, ids) -> str:
        """Ids (already CTC-collapsed, blanks removed or not) to text: specials dropped, `|` -> space."""
        skip = {self.index.get(t) for t in (PAD, BOS, EOS)}
        pieces = [" " if self.tokens[i] == WORD_SEP else self.tokens[i] for i in ids if i not in skip]
        return re.sub(r" +", " ", "".join(pieces)).strip()

    def save(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / VOCAB_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.index, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        path = Path(path)
        if path.is_dir():
            path = path / VOCAB_FILE
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise W2VError(f"cannot read vocabulary {path}: {e}") from None
        tokens = [None] * len(mapping)
        for tok, i in mapping.items():
            if not isinstance(i, int) or not 0 <= i < len(tokens) or tokens[i] is not None:
                raise W2VError(f"vocabulary {path}: ids must be 0..{len(tokens) - 1}, each used once")
            tokens[i] = tok
        return cls(tokens)
