"""The SpeechEngine contract, for every implementation (real ones join with a fixture)."""

import threading
from array import array

import pytest

from adapters.fake import FakeSpeechEngine, InMemoryVoiceLibrary
from core.domain.request import Sampling, SpeechRequest
from core.ports.speech_engine import EngineAudio, EngineDone, EngineProgress, ModelInfo, SpeechEngine


def _higgs(request):
    from adapters.higgs import HiggsSpeechEngine

    return HiggsSpeechEngine(request.getfixturevalue("demo_bundle"), device="cpu")


ENGINES = {"fake": lambda request: FakeSpeechEngine(), "higgs": _higgs}


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    engine = ENGINES[request.param](request)
    yield engine
    engine.close()


@pytest.fixture
def voices(engine, request):
    if isinstance(engine, FakeSpeechEngine):
        library = InMemoryVoiceLibrary.with_demo_voices()
    else:
        from adapters.voices import VolumeVoiceLibrary

        library = VolumeVoiceLibrary(request.getfixturevalue("demo_bundle").voices)
    return [library.get(v.name) for v in library.list()[:1]]


def request(seed=3, max_new_tokens=60, text="Hello world, this is a test."):
    return SpeechRequest(text, sampling=Sampling(seed=seed, max_new_tokens=max_new_tokens))


def run(engine, req, voices, cancel=None):
    return list(engine.speak(req.synthesis, voices, cancel or threading.Event()))


def test_is_a_speech_engine(engine):
    assert isinstance(engine, SpeechEngine)
    assert engine.sample_rate == 24000


def test_warm_up_makes_it_ready(engine):
    engine.warm_up()
    assert engine.is_ready()
    info = engine.describe()
    assert isinstance(info, ModelInfo) and info.loaded and info.to_dict()["engine"] == info.engine


def test_stream_ends_with_one_done_and_audio_is_float32(engine, voices):
    events = run(engine, request(), voices)
    assert isinstance(events[-1], EngineDone)
    assert sum(isinstance(e, EngineDone) for e in events) == 1
    audio = [e for e in events if isinstance(e, EngineAudio)]
    assert audio, "no audio"
    assert all(isinstance(e.samples, array) and e.samples.typecode == "f" for e in audio)
    samples_per_frame = engine.sample_rate // 25
    position = 0
    for chunk in audio:  # chunks are contiguous, in frame order
        assert chunk.frame_index * samples_per_frame == position
        position += len(chunk.samples)
    assert events[-1].frames * samples_per_frame == position
    assert 1 <= events[-1].frames <= 60
    assert any(isinstance(e, EngineProgress) for e in events)


def test_seed_makes_runs_reproducible(engine, voices):
    def samples(seed):
        return b"".join(e.samples.tobytes() for e in run(engine, request(seed), voices)
                        if isinstance(e, EngineAudio))

    assert samples(11) == samples(11)
    assert samples(11) != samples(12)


def test_max_new_tokens_bounds_the_frames(engine, voices):
    done = run(engine, request(max_new_tokens=12, text="word " * 100), voices)[-1]
    assert done.frames <= 12


def test_cancel_before_start_generates_almost_nothing(engine, voices):
    cancel = threading.Event()
    cancel.set()
    events = run(engine, request(text="word " * 100, max_new_tokens=500), voices, cancel)
    assert events[-1].frames <= 1
