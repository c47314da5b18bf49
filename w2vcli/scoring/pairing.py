"""Pairing hypotheses with references: by id, else by audio path, never by line order.

Ids are compared exactly. Paths are compared as component tuples after `normpath`, so the
same file named from different working directories (`test/a.flac` vs `/data/test/a.flac`)
meets on its longest common suffix; a pair is kept only when each side is the other's unique
best match. Entries left over are then tried by stem (extension dropped) under the same rule,
which also pairs a transcribed `1089-0000.flac` with a Kaldi id `1089-0000`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

from w2vcli.errors import W2VError
from w2vcli.scoring.hypfiles import Entry

Parts = tuple[str, ...]


@dataclass
class Pairing:
    key: str  # "id" or "audio": what the pairs were matched on
    pairs: list[tuple[Entry, Entry | None]]  # in reference order; None = no hypothesis
    extra: list[Entry]  # hypotheses that match no reference


def pair(refs: list[Entry], hyps: list[Entry], ref_path: str = "REF", hyp_path: str = "HYP") -> Pairing:
    """Match each reference to at most one hypothesis; the key that matches more wins (ids on a tie)."""
    by_id = None
    if all(e.id is not None for e in refs + hyps):
        by_id = _apply(refs, hyps, "id", _match_ids(refs, hyps))
        if all(h is not None for _, h in by_id.pairs):
            return by_id
    else:  # paths are the only key, so a repeated path cannot be told apart: say so
        _check_unique_paths(refs, ref_path)
        _check_unique_paths(hyps, hyp_path)
    by_path = _apply(refs, hyps, "audio", _match_paths(refs, hyps))
    if by_id is None or _matched(by_path) > _matched(by_id):
        return by_path
    return by_id


def _matched(p: Pairing) -> int:
    return sum(h is not None for _, h in p.pairs)


def _apply(refs: list[Entry], hyps: list[Entry], key: str, match: dict[int, int]) -> Pairing:
    used = set(match.values())
    return Pairing(
        key=key,
        pairs=[(r, hyps[match[i]] if i in match else None) for i, r in enumerate(refs)],
        extra=[h for j, h in enumerate(hyps) if j not in used],
    )


def _match_ids(refs: list[Entry], hyps: list[Entry]) -> dict[int, int]:
    where = {h.id: j for j, h in enumerate(hyps)}
    return {i: where[r.id] for i, r in enumerate(refs) if r.id in where}


def path_parts(path: str) -> Parts:
    """Path components without root, `.` and leading `..`: the comparable part of a path."""
    norm = os.path.normpath(path.replace("\\", "/"))
    return tuple(p for p in norm.split("/") if p not in ("", ".", ".."))


def _stem(parts: Parts) -> Parts:
    return parts[:-1] + (os.path.splitext(parts[-1])[0],) if parts else parts


def _match_paths(refs: list[Entry], hyps: list[Entry]) -> dict[int, int]:
    ref_parts = [_parts_of(e) for e in refs]
    hyp_parts = [_parts_of(e) for e in hyps]
    match = _mutual_suffix_match(ref_parts, hyp_parts)
    left_r = [i for i in range(len(refs)) if i not in match]
    used = set(match.values())
    left_h = [j for j in range(len(hyps)) if j not in used]
    stems = _mutual_suffix_match(
        [_stem_of(refs[i], ref_parts[i]) for i in left_r], [_stem_of(hyps[j], hyp_parts[j]) for j in left_h]
    )
    match.update({left_r[a]: left_h[b] for a, b in stems.items()})
    return match


def _parts_of(e: Entry) -> Parts:
    return path_parts(e.audio) if e.audio is not None else (e.id,)


def _stem_of(e: Entry, parts: Parts) -> Parts:
    return _stem(parts) if e.audio is not None else parts  # an id has no extension to drop


def _check_unique_paths(entries: list[Entry], path: str) -> None:
    seen: dict[Parts, Entry] = {}
    for e in entries:
        p = _parts_of(e)
        if p in seen:
            raise W2VError(
                f"{path}: {e.audio or e.id!r} appears more than once (lines {seen[p].line}, {e.line}); "
                "remove the duplicate or add distinct ids"
            )
        seen[p] = e


def _mutual_suffix_match(a: list[Parts], b: list[Parts]) -> dict[int, int]:
    """Pairs (i, j) where b[j] is a[i]'s unique longest-common-suffix partner and vice versa."""
    best_b = _best_partner(a, b)
    best_a = _best_partner(b, a)
    return {i: j for i, j in best_b.items() if best_a.get(j) == i}


def _best_partner(a: list[Parts], b: list[Parts]) -> dict[int, int]:
    index: dict[Parts, list[int]] = defaultdict(list)
    for j, parts in enumerate(b):
        for k in range(1, len(parts) + 1):
            index[parts[-k:]].append(j)
    best = {}
    for i, parts in enumerate(a):
        for k in range(len(parts), 0, -1):
            candidates = index.get(parts[-k:])
            if candidates:
                if len(candidates) == 1:
                    best[i] = candidates[0]
                break  # a longer suffix was ambiguous or absent; shorter ones only get worse
    return best
