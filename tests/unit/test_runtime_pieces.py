"""The runtime's tensor pieces on their own: delay pattern, resampling, chunking, sampling."""

import math

import numpy as np
import pytest
import torch

from boson_multimodal.chunking import chunk_text
from boson_multimodal.codec import AudioInputError, delay_frames, read_clip, undelay
from boson_multimodal.joins import SilenceWatch as _SilenceWatch
from boson_multimodal.resample import resample
from boson_multimodal.runtime import duration_bound_frames
from boson_multimodal.sampling import BIG, CodeIds
from tests.unit.slots import one_slot, sample


class Ids(CodeIds):
    def __init__(self):
        self.num_codebooks, self.codebook_size, self.bos, self.eos = 8, 1026, 1024, 1025


def test_delay_then_undelay_gives_the_codes_back():
    codes = torch.randint(0, 1024, (13, 8))
    frames = delay_frames(codes, 1024, 1025)
    assert frames.shape == (13 + 9, 8)
    assert (frames[0] == 1024).all() and (frames[-1] == 1025).all()
    assert frames[3, 3] == 1024 and frames[4, 3] == codes[0, 3]  # codebook 3 starts 3 frames late
    assert frames[4 + 3, 3] == codes[3, 3] and frames[-2, 3] == 1025
    assert torch.equal(undelay(frames[1:-1]), codes)


def test_resample_keeps_a_tone_and_the_expected_length():
    t = torch.arange(24000) / 24000
    tone = torch.sin(2 * math.pi * 440 * t)
    down = resample(tone, 24000, 16000)
    assert down.shape[-1] == 16000
    expected = torch.sin(2 * math.pi * 440 * torch.arange(16000) / 16000)
    assert (down[200:-200] - expected[200:-200]).abs().max() < 2e-3
    assert resample(torch.randn(2, 1, 44100), 44100, 24000).shape == (2, 1, 24000)
    assert torch.equal(resample(tone, 24000, 24000), tone)


def test_read_clip_resamples_to_24k_mono_and_rejects_junk():
    import io

    import soundfile as sf

    buf = io.BytesIO()
    stereo = np.stack([np.sin(np.linspace(0, 300, 44100))] * 2, axis=1).astype(np.float32) * 0.5
    sf.write(buf, stereo, 44100, format="FLAC")
    wave = read_clip(buf.getvalue())
    # librosa's length: ceil(44100 * (24000 / 44100)) in floating point is 24001
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 24001
    with pytest.raises(AudioInputError, match="cannot decode"):
        read_clip(b"definitely not audio")
    long = io.BytesIO()
    sf.write(long, np.zeros(24000 * 3, dtype=np.float32), 24000, format="WAV")
    with pytest.raises(AudioInputError, match="limit is 2s"):
        read_clip(long.getvalue(), max_seconds=2)


@pytest.mark.parametrize(
    "method, text, kwargs, expected",
    [
        ("none", "One. Two.", {}, ["One. Two."]),
        ("word", "One two three. Four five. Six seven eight nine.", {"max_words": 5},
         ["One two three. Four five.", "Six seven eight nine."]),
        ("word", "a b c d e f g", {"max_words": 3}, ["a b c", "d e f", "g"]),
        ("speaker", "[SPEAKER0] Hi. [SPEAKER1] Hello. [SPEAKER0] Bye.", {"max_turns": 2},
         ["[SPEAKER0] Hi.\n[SPEAKER1] Hello.", "[SPEAKER0] Bye."]),
    ],
)
def test_chunking(method, text, kwargs, expected):
    assert chunk_text(text, method, **kwargs) == expected


def _sample(logits, step, eos_base=BIG, window=None, greedy=True, top_k=0, top_p=1.0, ras=(0, 2), seed=0):
    state = one_slot(Ids(), step=step, eos_base=eos_base, window=window, greedy=greedy, top_k=top_k, top_p=top_p,
                     ras=ras, seed=seed)
    return sample(logits, state, Ids())


def test_delay_pattern_forces_bos_then_eos():
    logits = torch.randn(8, 1026)
    frame = _sample(logits, step=3)
    assert (frame[3:] == 1024).all() and (frame[:3] < 1024).all()
    frame = _sample(logits, step=20, eos_base=17)  # codebook 0 ended at frame 17: codebooks 0..2 forced
    assert (frame[:3] == 1025).all() and (frame[3:] != 1025).any()


def test_top_k_one_and_tiny_top_p_pick_the_argmax():
    logits = torch.randn(8, 1026)
    logits[:, 1024:] = -1e9
    best = logits.argmax(dim=-1)
    for kwargs in ({"top_k": 1}, {"top_p": 1e-6}):
        for seed in range(5):
            assert torch.equal(_sample(logits, 99, greedy=False, seed=seed, **kwargs), best)


def test_sampling_is_seeded():
    logits = torch.randn(8, 1026)
    a = _sample(logits, 99, greedy=False, top_k=200, seed=1)
    assert torch.equal(a, _sample(logits, 99, greedy=False, top_k=200, seed=1))
    assert any(not torch.equal(a, _sample(logits, 99, greedy=False, top_k=200, seed=s)) for s in range(2, 6))


def test_ras_redraws_a_code_repeated_in_the_window():
    logits = torch.full((8, 1026), -1e9)
    logits[:, 7] = 10.0  # greedy would always pick 7
    logits[:, 8] = 9.0
    window = torch.full((256, 8), 1024)
    window[:3] = 7  # 7 already three times in the last frames
    frame = _sample(logits, 99, window=window, ras=(7, 2))
    assert (frame != 7).any()
    assert torch.equal(_sample(logits, 99, window=window, ras=(0, 2)), torch.full((8,), 7))


def test_duration_bound_grows_with_text():
    assert duration_bound_frames("Hi") < duration_bound_frames("word " * 50) < 25 * 60


def test_silence_after_speech_stops_but_leading_silence_does_not():
    watch = _SilenceWatch(24000)
    watch.feed(np.zeros(24000 * 3, dtype=np.float32))
    assert not watch.stop
    watch.feed(0.3 * np.ones(24000, dtype=np.float32))
    watch.feed(np.zeros(24000, dtype=np.float32))
    assert not watch.stop
    watch.feed(np.zeros(24000 * 1 + 960, dtype=np.float32))
    assert watch.stop
