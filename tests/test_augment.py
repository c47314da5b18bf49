"""Training-time augmentation (data/augment.py): each kind does what its name says, measured on the
signal, and a batch is augmented inside its lengths, reproducibly by seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from w2vcli.data import augment as aug
from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.loader import Batch, Item, collate_padded, make_loader
from w2vcli.data.manifest import Utterance
from w2vcli.errors import UsageError
from w2vcli.training.config import PretrainConfig


def tone(seconds=1.0, hz=1000.0, amp=0.1):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return amp * np.sin(2 * np.pi * hz * t)


def band_power(x, lo, hi):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.shape[0], 1 / SAMPLE_RATE)
    return spectrum[(f >= lo) & (f < hi)].sum()


def test_mix_at_snr_sets_the_ratio_exactly():
    rng = np.random.default_rng(0)
    speech, noise = tone(), rng.standard_normal(8000)  # noise shorter: tiled
    for snr in (0.0, 10.0, 20.0):
        mixed = aug.mix_at_snr(speech, noise, snr)
        added = mixed - speech
        assert added.shape == speech.shape
        assert 20 * np.log10(np.sqrt(np.mean(speech**2)) / np.sqrt(np.mean(added**2))) == pytest.approx(snr)
    assert np.array_equal(aug.mix_at_snr(np.zeros(100), noise, 5.0), np.zeros(100))  # silence stays silent


@pytest.mark.parametrize("exponent,low_over_high", [(0.0, (0.5, 2.0)), (2.0, (30.0, np.inf))])
def test_colored_noise_slope(exponent, low_over_high):
    x = aug.colored_noise(SAMPLE_RATE * 4, exponent, np.random.default_rng(1))
    # equal-width bands: white noise has equal power in both, brown (1/f^2) far more in the low one
    ratio = band_power(x, 100, 1100) / band_power(x, 5000, 6000)
    assert low_over_high[0] < ratio < low_over_high[1]


def test_room_impulse_decays_60_db_over_rt60():
    rt60 = 0.5
    h = aug.room_impulse(rt60, np.random.default_rng(2), direct_db=0.0)
    assert h[0] == 1.0 and h.shape[0] == int(rt60 * SAMPLE_RATE)
    assert np.sum(h[1:] ** 2) == pytest.approx(1.0)  # tail energy equals the direct path's at 0 dB
    early, late = np.mean(h[1:800] ** 2), np.mean(h[-800:] ** 2)
    assert 10 * np.log10(early / late) > 45  # close to 60 dB between the first and last 50 ms


def test_reverb_smears_a_click_and_keeps_the_peak():
    x = np.zeros(SAMPLE_RATE)
    x[1000] = 0.5
    y = aug.add_reverb(x, np.random.default_rng(3))
    assert y.shape == x.shape and np.max(np.abs(y)) == pytest.approx(0.5)
    assert np.all(np.abs(y[:1000]) < 1e-12)  # causal
    assert np.count_nonzero(np.abs(y[1001:]) > 1e-4) > 1000  # a tail after the click


def test_telephone_keeps_the_band_and_removes_the_rest():
    inside, above, below = tone(hz=1000.0), tone(hz=6000.0), tone(hz=100.0)
    for x, kept in ((inside, True), (above, False), (below, False)):
        y = aug.telephone(x)
        assert y.shape == x.shape
        ratio = np.sum(y[2000:-2000] ** 2) / np.sum(x[2000:-2000] ** 2)
        assert (0.8 < ratio < 1.25) if kept else ratio < 0.01


def test_telephone_quantises_to_mu_law_levels():
    y = aug.telephone(tone(amp=0.5))
    # 8-bit mu-law: error well above 16-bit's, well below the signal
    err = y[2000:-2000] - tone(amp=0.5)[2000:-2000]
    assert 1e-4 < np.sqrt(np.mean(err**2)) < 0.05


def test_codec_round_trip_keeps_length_and_sound():
    x = tone(2.0, hz=440.0)
    rng = np.random.default_rng(4)
    for _ in range(2):
        y = aug.codec(x, rng)
        assert y.shape == x.shape
        assert not np.array_equal(y, x)
        assert 0.5 < np.sum(y**2) / np.sum(x**2) < 1.5


@pytest.mark.parametrize("codec", range(len(aug.CODECS)))
@pytest.mark.parametrize("level", aug.CODEC_LEVEL)
def test_codec_takes_every_level_it_draws(monkeypatch, codec, level):
    """A refused setting once killed a pretraining run mid-way (MP3 at level 1)."""

    class Draws:  # the codec and the level chosen, as a generator would draw them
        def integers(self, n):
            return codec

        def uniform(self, lo, hi):
            return level

    x = tone(1.0, hz=440.0)
    y = aug.codec(x, Draws())
    assert y.shape == x.shape and not np.array_equal(y, x)  # encoded, not passed through


def test_a_refusing_encoder_leaves_the_audio_as_it_was(monkeypatch):
    def refuse(*args, **kwargs):
        raise aug.sf.LibsndfileError(1, "Error set compression level")

    monkeypatch.setattr(aug.sf, "write", refuse)
    x = tone()
    assert np.array_equal(aug.codec(x, np.random.default_rng(0)), x)


def test_gain_clips_at_full_scale():
    y = aug.gain(tone(amp=0.9), np.random.default_rng(5))
    assert np.max(np.abs(y)) <= 1.0


def make_batch():
    rng = np.random.default_rng(6)
    wav = torch.zeros(3, SAMPLE_RATE)
    lengths = torch.tensor([SAMPLE_RATE, 12000, 8000])
    for i, n in enumerate(lengths):
        wav[i, :n] = torch.from_numpy(0.1 * rng.standard_normal(int(n))).float()
    return Batch(wav, lengths, ["a", "b", "c"])


def test_batch_is_augmented_inside_lengths_and_reproducibly():
    a, b = make_batch(), make_batch()
    clean = make_batch().waveforms
    aug.Augment(aug.KINDS, prob=1.0)(a, np.random.default_rng(7))
    aug.Augment(aug.KINDS, prob=1.0)(b, np.random.default_rng(7))
    assert torch.equal(a.waveforms, b.waveforms)
    for i, n in enumerate(a.lengths.tolist()):
        assert torch.all(a.waveforms[i, n:] == 0)  # padding stays padding
        assert not torch.equal(a.waveforms[i, :n], clean[i, :n])
    untouched = make_batch()
    aug.Augment(aug.KINDS, prob=1e-9)(untouched, np.random.default_rng(7))
    assert torch.equal(untouched.waveforms, clean)


def test_babble_comes_from_other_rows():
    batch = make_batch()
    batch.waveforms[1:] = 0
    batch.waveforms[1, :12000] = torch.from_numpy(tone(0.75, hz=300.0)).float()
    batch.waveforms[2, :8000] = torch.from_numpy(tone(0.5, hz=300.0)).float()
    row0 = batch.waveforms[0].clone()
    aug.Augment(("babble",), prob=1.0)(batch, np.random.default_rng(8))
    added = batch.waveforms[0].numpy() - row0.numpy()
    assert band_power(added, 290, 310) > 0.9 * band_power(added, 0, 8000)  # the other row's tone


def test_parse_kinds():
    assert aug.parse_kinds("all") == aug.KINDS
    assert aug.parse_kinds("none") == ()
    assert aug.parse_kinds("noise, Reverb") == ("reverb", "noise")  # applied in KINDS order
    with pytest.raises(ValueError, match="unknown augmentation echo"):
        aug.parse_kinds("noise,echo")


def test_config_refuses_unknown_kinds_and_bad_probability():
    with pytest.raises(UsageError, match="augment takes"):
        PretrainConfig(max_updates=1, augment=("echo",))
    with pytest.raises(UsageError, match="augment_prob"):
        PretrainConfig(max_updates=1, augment=("noise",), augment_prob=0.0)


def test_loader_applies_augmentation(tmp_path):
    import soundfile as sf

    utts = []
    for i in range(4):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, tone(1.0, hz=200.0 + 100 * i), SAMPLE_RATE)
        utts.append(Utterance(id=f"u{i}", audio=str(path), duration=1.0))
    plain = next(iter(make_loader(utts, 4.0, crop_seconds=1.0, seed=0)))
    noisy = next(iter(make_loader(utts, 4.0, crop_seconds=1.0, seed=0, augment=aug.Augment(("noise",), 1.0))))
    assert plain.ids == noisy.ids
    assert not torch.equal(plain.waveforms, noisy.waveforms)
    assert collate_padded([Item("x", torch.ones(5), 5)]).waveforms.shape == (1, 5)
