"""Audio crosses the layers as one type (`core.domain.audio.Samples`, float32 mono in an
`array('f')`), copied once between the engine and an encoder: the Higgs adapter turns the
runtime's numpy waveform into samples in one copy, and the use case hands the engine's samples
on as the chunk's, untouched."""

from __future__ import annotations

import tracemalloc
from array import array

import numpy as np
import pytest

from adapters.fake import FakeSpeechEngine, InMemoryVoiceLibrary
from adapters.higgs.engine import samples_of
from core.domain.audio import WavEncoder
from core.domain.events import AudioChunk
from core.domain.request import Sampling, SpeechRequest
from core.ports.speech_engine import EngineAudio
from core.service.generate_speech import GenerateSpeech


@pytest.mark.parametrize("wave", [
    np.linspace(-1, 1, 24_000, dtype=np.float32),
    np.linspace(-1, 1, 24_000, dtype=np.float64),  # converted to float32 on the way
    np.linspace(-1, 1, 48_000, dtype=np.float32)[::2],  # a strided view
    np.zeros(0, dtype=np.float32),
    np.array([np.nan, np.inf, -np.inf, 1.0, -1.0, 3e38], dtype=np.float32),
    np.float32(0.5) * np.ones(1, dtype=np.float32),
], ids=["f32", "f64", "strided", "empty", "specials", "one"])
def test_samples_of_keeps_every_value(wave):
    samples = samples_of(wave)
    assert isinstance(samples, array) and samples.typecode == "f" and len(samples) == len(wave)
    np.testing.assert_array_equal(np.frombuffer(samples, dtype=np.float32), wave.astype(np.float32))


def test_samples_of_copies_the_waveform_once():
    wave = np.random.default_rng(0).random(1_000_000, dtype=np.float32)
    tracemalloc.start()
    try:
        samples = samples_of(wave)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(samples) == len(wave)
    assert peak < 1.25 * wave.nbytes, f"{peak / wave.nbytes:.2f} copies"  # through bytes it is 2.06


class _Recording(FakeSpeechEngine):
    """The fake engine, keeping every samples object it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[array] = []

    def speak(self, synthesis, voices, cancel, check=None):
        for event in super().speak(synthesis, voices, cancel, check):
            if isinstance(event, EngineAudio):
                self.handed.append(event.samples)
            yield event


@pytest.mark.parametrize("text", ["Hi.", "word " * 200])
def test_the_use_case_hands_the_engines_samples_on_as_they_are(text):
    engine = _Recording()
    use_case = GenerateSpeech(engine, InMemoryVoiceLibrary.with_demo_voices(), WavEncoder())
    chunks = [e for e in use_case(SpeechRequest(text, sampling=Sampling(seed=3))) if isinstance(e, AudioChunk)]
    assert len(chunks) == len(engine.handed) > 0
    assert all(chunk.samples is handed for chunk, handed in zip(chunks, engine.handed))
