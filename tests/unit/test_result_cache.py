"""Repeated requests from the result cache (HIGGS_RESULT_CACHE), on the fakes: a seeded request
asked again is answered from the stored audio without generating, says so, and names the
request that made it; anything that could change the output misses; no seed, no cache."""

import threading

import pytest

from adapters.fake import FakeSpeechEngine, InMemoryObjectStore, InMemoryVoiceLibrary
from adapters.fake.voices import tone_clip
from core.domain.audio import WavEncoder, pcm16_bytes
from core.domain.events import AudioChunk, AudioStored, SpeechCompleted, SpeechStarted
from core.domain.request import NamedVoice, OutputTarget, Sampling, SpeechRequest
from core.domain.voice import VoicePrompt
from core.service.archive import AudioArchive
from core.service.generate_speech import GenerateSpeech
from core.service.result_cache import ResultCache


def setup(voices=None):
    engine, store = FakeSpeechEngine(), InMemoryObjectStore()
    library = voices or InMemoryVoiceLibrary.with_demo_voices()
    use_case = GenerateSpeech(engine, library, WavEncoder(), AudioArchive(store),
                              result_cache=ResultCache(store, "cache-bucket", "higgs-tts"))
    return engine, store, use_case


def run(use_case, request):
    events = list(use_case(request, threading.Event()))
    started = next(e for e in events if isinstance(e, SpeechStarted))
    audio = b"".join(pcm16_bytes(e.samples) for e in events if isinstance(e, AudioChunk))
    return started, audio, events[-1], events


def request(**changes):
    fields = dict(text="A sentence that repeats.", voices=(NamedVoice("belinda"),), scene_prompt="A room.",
                  sampling=Sampling(seed=7, max_new_tokens=80))
    fields.update(changes)
    return SpeechRequest(**fields)


def test_a_seeded_repeat_is_served_from_the_cache_and_names_the_original():
    engine, store, use_case = setup()
    first_started, first_audio, first, _ = run(use_case, request())
    assert not first_started.cached and first.metadata["cache"] == "miss"
    generated = engine.requests
    again = request(output=OutputTarget("out-bucket", "again.wav"))
    started, audio, done, events = run(use_case, again)
    assert isinstance(done, SpeechCompleted), done
    assert started.cached and engine.requests == generated  # nothing generated
    assert done.metadata["cache"] == "hit" and done.metadata["original_request_id"] == first.request_id
    assert audio == first_audio and done.frames == first.frames and done.stop_reason == first.stop_reason
    assert any(isinstance(e, AudioStored) for e in events)
    record = store.get("out-bucket", "again.wav.json")
    assert first.request_id.encode() in record  # the event record names the original request


@pytest.mark.parametrize("change", [
    {"text": "Another sentence."}, {"scene_prompt": "Outdoors."}, {"scene_prompt": None},
    {"sampling": Sampling(seed=8, max_new_tokens=80)}, {"sampling": Sampling(seed=7, max_new_tokens=81)},
    {"sampling": Sampling(seed=7, max_new_tokens=80, temperature=0.9)}, {"voices": (NamedVoice("en_man"),)},
    {"voices": ()},
])
def test_anything_that_changes_the_output_misses(change):
    engine, _, use_case = setup()
    run(use_case, request())
    before = engine.requests
    started, _, done, _ = run(use_case, request(**change))
    assert not started.cached and done.metadata["cache"] == "miss" and engine.requests == before + 1


def test_a_changed_clip_under_the_same_name_misses():
    library = InMemoryVoiceLibrary.with_demo_voices()
    engine, _, use_case = setup(library)
    run(use_case, request())
    library.voices["belinda"] = VoicePrompt("belinda", library.voices["belinda"].transcript, tone_clip(333.0))
    started, _, _, _ = run(use_case, request())
    assert not started.cached


def test_without_a_seed_nothing_is_cached():
    engine, store, use_case = setup()
    for _ in range(2):
        started, _, done, _ = run(use_case, request(sampling=Sampling(max_new_tokens=80)))
        assert not started.cached and done.metadata["cache"] == "off"
    assert engine.requests == 2 and not [k for k in store.objects if "/result-cache/" in k[1]]


def test_an_unreadable_entry_is_generated_again():
    engine, store, use_case = setup()
    run(use_case, request())
    broken = [key for key in store.objects if key[1].endswith(".f32") and "/result-cache/" in key[1]]
    assert len(broken) == 1
    for key in broken:
        store.objects[key] = (b"not the samples",) + store.objects[key][1:]
    started, audio, done, _ = run(use_case, request())
    assert not started.cached and isinstance(done, SpeechCompleted) and audio
