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
from w2vcli.fsutil import atomic_write, read_json_object

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
            " " if unicodedata.category(c).startswith(("P", "S")) and c not in _KEEP_PUNCT else c
            for c in text
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
        return atomic_write(
            Path(directory) / VOCAB_FILE, json.dumps(self.index, ensure_ascii=False, indent=1) + "\n"
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        path = Path(path)
        if path.is_dir():
            path = path / VOCAB_FILE
        mapping = read_json_object(path, "vocabulary")  # token -> id
        tokens = [None] * len(mapping)
        for tok, i in mapping.items():
            if (
                not isinstance(i, int)
                or isinstance(i, bool)
                or not 0 <= i < len(tokens)
                or tokens[i] is not None
            ):
                raise W2VError(f"vocabulary {path}: ids must be 0..{len(tokens) - 1}, each used once")
            tokens[i] = tok
        return cls(tokens)


_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")


def find_numbers(text: str) -> list[str]:
    """Numbers written with digits ("42", "3.5", "1/2"): kept as is, but reported, because a
    character model then has to learn to spell them and a user may prefer to write them out."""
    return _NUMBER.findall(text)


SPM_FILE = "spm.model"
SPM_PREFIX = "\u2581"  # sentencepiece's word-start marker


class SentencePieceVocabulary:
    """Subword vocabulary with the same interface as `Vocabulary`; id 0 is `<pad>`, the CTC blank.

    Stored as `spm.model` (a sentencepiece model proto) in a directory.
    """

    blank_id = 0
    word_separator = SPM_PREFIX

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.tokens = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        if self.tokens[0] != PAD:
            raise W2VError(
                "sentencepiece model must have <pad> as id 0 (the CTC blank); retrain it with w2v prep"
            )
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int:
        return self.sp.unk_id()

    @classmethod
    def train(cls, texts, vocab_size: int, model_type: str = "unigram") -> SentencePieceVocabulary:
        """Train on normalised texts; `vocab_size` is an upper bound (small corpora get fewer pieces)."""
        import io

        import sentencepiece as spm

        texts = [t for t in texts if t]
        if not texts:
            raise W2VError("no transcripts to train a sentencepiece vocabulary on; use --vocab chars")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
                model_type=model_type, pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
                character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
            )  # fmt: skip
        except RuntimeError as e:
            raise W2VError(f"sentencepiece training failed ({e}); try another --vocab-size") from None
        return cls(model.getvalue())

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids if i != self.blank_id])

    def characters(self) -> set[str]:
        return {c for t in self.tokens[2:] for c in t.replace(SPM_PREFIX, "")}

    def unknown_chars(self, text: str) -> set[str]:
        known = self.characters()
        return {c for c in text if c != " " and c not in known}

    def save(self, directory: str | os.PathLike) -> Path:
        return atomic_write(Path(directory) / SPM_FILE, self.model_proto)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SentencePieceVocabulary:
        path = Path(path)
        if path.is_dir():
            path = path / SPM_FILE
        try:
            return cls(path.read_bytes())
        except OSError as e:
            raise W2VError(f"cannot read sentencepiece model {path}: {e.strerror or e}") from None
        except RuntimeError:
            raise W2VError(f"{path} is not a sentencepiece model") from None


def load_vocabulary(path: str | os.PathLike) -> Vocabulary | SentencePieceVocabulary:
    """Whichever vocabulary `path` holds: a directory with `spm.model` or `vocab.json`, or either file."""
    path = Path(path)
    if path.is_dir():
        if (path / SPM_FILE).exists():
            return SentencePieceVocabulary.load(path / SPM_FILE)
        if (path / VOCAB_FILE).exists():
            return Vocabulary.load(path / VOCAB_FILE)
        raise W2VError(f"no {VOCAB_FILE} or {SPM_FILE} in {path}; run w2v prep to make one")
    if path.suffix == ".model":
        return SentencePieceVocabulary.load(path)
    return Vocabulary.load(path)
