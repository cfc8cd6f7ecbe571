"""`speed`: Rubber Band's stretch, streamed in blocks with crossfaded joins (exact length, no
click at a join, the same audio however the input was chunked), through the use case on every
range edge, and refused where it cannot be honoured."""

from __future__ import annotations

import math
from array import array

import numpy as np
import pytest
from pedalboard import time_stretch

from adapters.fake import FakeSpeechEngine, InMemoryVoiceLibrary
from adapters.grpc.messages import message_from_request, request_from_message
from adapters.pedalboard import RubberBandStretcher
from adapters.runpod.schema import request_from_input
from core.domain.audio import WavEncoder
from core.domain.errors import DomainError
from core.domain.events import AudioChunk, SpeechCompleted
from core.domain.request import Sampling, SpeechRequest
from core.service.generate_speech import GenerateSpeech

RATE = 24000
SPEEDS = [0.25, 0.3, 0.5, 0.8, 1.25, 1.5, 2.0, 3.3, 4.0]


def voice_like(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 180 * t + 3 * np.sin(2 * np.pi * 2 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
            ).astype(np.float32)


def stretch(samples: np.ndarray, speed: float, chunk: int) -> np.ndarray:
    stream = RubberBandStretcher().open(speed, RATE)
    out = array("f")
    for i in range(0, len(samples), chunk):
        out.extend(stream.push(array("f", samples[i:i + chunk])))
    out.extend(stream.finish())
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("speed", SPEEDS)
@pytest.mark.parametrize("seconds", [0.01, 0.49, 0.5, 0.51, 2.7])
def test_the_length_is_the_input_over_the_speed_to_the_sample(speed, seconds):
    x = voice_like(seconds)
    assert len(stretch(x, speed, 960)) == round(len(x) / speed)


@pytest.mark.parametrize("speed", SPEEDS)
def test_no_click_at_a_join_and_the_same_audio_however_it_was_chunked(speed):
    x = voice_like(3.0)
    whole = time_stretch(x[None, :], RATE, stretch_factor=speed)[0]
    ours = [stretch(x, speed, chunk) for chunk in (1, 960, 7777, len(x))] if speed >= 2 else \
        [stretch(x, speed, chunk) for chunk in (960, 7777, len(x))]
    for other in ours[1:]:
        assert np.array_equal(other, ours[0])
    # the steepest step between two samples is no steeper than Rubber Band's on the whole buffer
    assert np.abs(np.diff(ours[0])).max() <= 1.05 * np.abs(np.diff(whole)).max()
    assert np.isfinite(ours[0]).all()


def test_silence_stays_silence():
    assert np.abs(stretch(np.zeros(RATE, np.float32), 1.7, 960)).max() < 1e-6


def use_case(stretcher=RubberBandStretcher()):
    engine = FakeSpeechEngine()
    return GenerateSpeech(engine, InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(), stretcher=stretcher)


@pytest.mark.parametrize("speed", SPEEDS + [1.0])
def test_the_request_speed_scales_the_duration(speed):
    events = list(use_case()(SpeechRequest("A sentence to speak at a pace.", sampling=Sampling(seed=3), speed=speed)))
    plain = list(use_case()(SpeechRequest("A sentence to speak at a pace.", sampling=Sampling(seed=3))))
    done, base = events[-1], plain[-1]
    assert isinstance(done, SpeechCompleted) and isinstance(base, SpeechCompleted)
    assert math.isclose(done.duration_seconds, base.duration_seconds / speed, rel_tol=0.03)
    streamed = sum(len(e.samples) for e in events if isinstance(e, AudioChunk))
    assert streamed == round(base.duration_seconds * RATE / speed)  # every chunk went out, the tail too


@pytest.mark.parametrize("speed", [0.2499, 4.0001, 0, -1, float("nan"), float("inf"), True, "2"])
def test_a_speed_out_of_range_is_refused(speed):
    with pytest.raises(DomainError) as refused:
        SpeechRequest("Hi.", speed=speed)
    assert refused.value.code == "INVALID_SPEED"


def test_without_a_stretcher_a_speed_is_refused_before_any_work():
    events = list(use_case(stretcher=None)(SpeechRequest("Hi there.", speed=2.0)))
    assert type(events[-1]).__name__ == "SpeechFailed" and events[-1].error.code == "INVALID_SPEED"
    assert len(events) == 1


def test_every_face_carries_the_speed():
    request = SpeechRequest("Hi there.", speed=0.75)
    assert request_from_message(message_from_request(request)).speed == 0.75
    assert request_from_message(message_from_request(SpeechRequest("Hi."))).speed == 1.0
    assert request_from_input({"transcript": "Hi.", "speed": 2.5}).speed == 2.5
