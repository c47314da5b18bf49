"""Chunking: kept frames tile the file exactly once, each chunk is the right slice, memory stays bounded."""

import numpy as np
import pytest
import soundfile as sf

from w2vcli.data.audio import load_audio
from w2vcli.data.chunking import ChunkPlan, iter_chunks, read_blocks, stitch
from w2vcli.errors import UsageError


def blocks_of(wav: np.ndarray, sizes):
    i, k = 0, 0
    while i < len(wav):
        n = sizes[k % len(sizes)]
        yield wav[i : i + n]
        i, k = i + n, k + 1


def frame_features(wav: np.ndarray, plan: ChunkPlan) -> np.ndarray:
    """A stand-in for the model: one value per frame that depends only on the frame's 400 samples."""
    t = plan.output_frames(len(wav))
    return np.array([[wav[f * 320 : f * 320 + 400].sum(), f] for f in range(t)], np.float64).reshape(
        -1, 2
    )  # (T, 2)


@pytest.mark.parametrize("n", [399, 400, 720, 16000, 16000 * 7 + 123, 16000 * 21, 16000 * 33 + 5])
@pytest.mark.parametrize("chunk,stride", [(2.0, 0.5), (3.0, 0.02), (5.0, 1.0)])
def test_kept_frames_tile_the_file_and_match_unchunked(n, chunk, stride):
    rng = np.random.default_rng(n)
    wav = rng.standard_normal(n).astype(np.float32)
    plan = ChunkPlan.from_seconds(chunk, stride)
    chunks = list(iter_chunks(blocks_of(wav, [3000, 17, 40000]), plan))
    pieces, covered = [], []
    for c in chunks:
        start = c.start_frame * 320
        assert np.array_equal(c.wav, wav[start : start + len(c.wav)])  # the right slice of the file
        assert len(c.wav) <= plan.end_sample(plan.chunk_frames)  # never more than one chunk
        feats = frame_features(c.wav, plan)
        feats[:, 1] += c.start_frame  # local frame -> global frame
        pieces.append((feats, c.keep))
        lo, hi = c.keep
        covered += list(range(c.start_frame + lo, c.start_frame + (hi if hi >= 0 else len(feats))))
    total = plan.output_frames(n)
    assert covered == list(range(total))  # every frame exactly once, in order
    stitched = stitch(pieces)
    assert np.allclose(stitched, frame_features(wav, plan))
    if n <= plan.end_sample(plan.chunk_frames):
        assert len(chunks) == 1 and chunks[0].keep == (0, -1)  # short files are not cut


def test_long_stream_is_cut_into_bounded_chunks():
    plan = ChunkPlan.from_seconds(30.0, 5.0)
    hour = (np.zeros(64000, np.float32) for _ in range(900))  # 60 minutes, 4 s blocks, never all in memory
    sizes = [len(c.wav) for c in iter_chunks(hour, plan)]
    assert max(sizes) <= plan.end_sample(plan.chunk_frames)
    assert len(sizes) == pytest.approx(3600 / 20, abs=2)  # 20 s kept per chunk


def test_bad_stride_is_a_usage_error():
    with pytest.raises(UsageError, match="stride"):
        ChunkPlan.from_seconds(10.0, 5.0)
    with pytest.raises(UsageError, match="stride"):
        ChunkPlan.from_seconds(10.0, 0.0)
    assert ChunkPlan.from_seconds(0.0, 0.0).chunk_frames == 0  # chunking off


def test_read_blocks_streams_what_load_audio_decodes(tmp_path):
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((44100 * 9, 2))).astype(np.float32)
    path = tmp_path / "x.flac"
    sf.write(path, stereo, 44100, subtype="PCM_24")
    streamed = np.concatenate(list(read_blocks(path)))
    whole = load_audio(path)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.abs(streamed[1000 : n - 1000] - whole[1000 : n - 1000]).max() < 1e-3


def test_read_blocks_reports_empty_and_missing(tmp_path):
    empty = tmp_path / "e.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(Exception, match="no audio samples"):
        list(read_blocks(empty))
    with pytest.raises(Exception, match="No such file|not found|no such"):
        list(read_blocks(tmp_path / "missing.wav"))


def test_stitch_greedy_equals_greedy_over_the_stitched_logits():
    """Runs cut at chunk borders (a token spanning the border, a blank on it) join as in one pass."""
    from w2vcli.data.chunking import stitch_greedy
    from w2vcli.decoding.ctc import greedy_search

    rng = np.random.default_rng(0)
    ids = np.repeat(rng.integers(0, 4, 120), rng.integers(1, 6, 120))  # runs of 1-5 frames, 0 = blank
    logits = (4.0 * np.eye(5)[ids] + 0.1 * rng.standard_normal((len(ids), 5))).astype(np.float32)  # (T, V)
    whole = greedy_search(logits)
    for cuts in ([], [1], [37, 38, 200], sorted(rng.choice(np.arange(1, len(ids)), 25, replace=False))):
        bounds = [0, *cuts, len(ids)]
        pieces = [(a, greedy_search(logits[a:b])) for a, b in zip(bounds, bounds[1:])]
        hyp = stitch_greedy(pieces)
        assert (hyp.ids, hyp.starts, hyp.ends) == (whole.ids, whole.starts, whole.ends)
        assert hyp.score == pytest.approx(whole.score, rel=1e-5)
    assert stitch_greedy([]).ids == []
