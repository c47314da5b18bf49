"""Normalisation, number reporting, and both vocabularies (characters and sentencepiece)."""

from __future__ import annotations

import pytest

from w2vcli.data.text import (
    SentencePieceVocabulary,
    Vocabulary,
    find_numbers,
    load_vocabulary,
    normalize_text,
)
from w2vcli.errors import W2VError

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "speech recognition from raw audio",
    "we don't need labels to learn good representations",
    "a small vocabulary keeps the output layer small",
] * 10


def test_normalize_defaults_and_flags():
    assert normalize_text("  Hello,  World! Don\u2019t  ") == "hello world don't"
    assert normalize_text("Hello, World!", lowercase=False) == "Hello World"
    assert normalize_text("Hello, World!", strip_punctuation=False) == "hello, world!"
    assert normalize_text("Room 101, floor 3.5") == "room 101 floor 3 5"  # punctuation goes, digits stay


def test_find_numbers():
    assert find_numbers("at 10:30 we paid 3.50 for 2 coffees") == ["10:30", "3.50", "2"]
    assert find_numbers("no digits here") == []


def test_character_vocabulary_round_trip(tmp_path):
    vocab = Vocabulary.from_texts(TEXTS)
    assert vocab.tokens[0] == "<pad>" and vocab.blank_id == 0
    ids = vocab.encode("the dog")
    assert vocab.decode(ids) == "the dog"
    assert vocab.unknown_chars("the dog ž") == {"ž"}
    vocab.save(tmp_path)
    assert Vocabulary.load(tmp_path).tokens == vocab.tokens


def test_sentencepiece_vocabulary(tmp_path):
    sp = SentencePieceVocabulary.train(TEXTS, vocab_size=60)
    assert sp.tokens[0] == "<pad>" and sp.blank_id == 0 and 10 < len(sp) <= 60
    ids = sp.encode("the lazy dog")
    assert 0 not in ids and all(0 < i < len(sp) for i in ids)
    assert sp.decode(ids) == "the lazy dog"
    assert sp.decode([0] + ids + [0]) == "the lazy dog"  # blanks are dropped
    assert sp.unknown_chars("the dog ž") == {"ž"}
    path = sp.save(tmp_path)
    assert path.name == "spm.model"
    again = SentencePieceVocabulary.load(tmp_path)
    assert again.tokens == sp.tokens and again.encode("the lazy dog") == ids


def test_sentencepiece_needs_text():
    with pytest.raises(W2VError, match="no transcripts"):
        SentencePieceVocabulary.train(["", ""], vocab_size=50)


def test_load_vocabulary_picks_the_kind(tmp_path):
    chars, spm = tmp_path / "chars", tmp_path / "spm"
    chars.mkdir()
    spm.mkdir()
    Vocabulary.from_texts(TEXTS).save(chars)
    SentencePieceVocabulary.train(TEXTS, 40).save(spm)
    assert isinstance(load_vocabulary(chars), Vocabulary)
    assert isinstance(load_vocabulary(chars / "vocab.json"), Vocabulary)
    assert isinstance(load_vocabulary(spm), SentencePieceVocabulary)
    assert isinstance(load_vocabulary(spm / "spm.model"), SentencePieceVocabulary)
    with pytest.raises(W2VError, match="no vocab.json"):
        load_vocabulary(tmp_path)
    (tmp_path / "junk.model").write_bytes(b"nonsense")
    with pytest.raises(W2VError, match="not a sentencepiece model"):
        load_vocabulary(tmp_path / "junk.model")
