import json
import threading

import pytest

from adapters.fake import FakeSpeechEngine, InMemoryObjectStore, InMemoryVoiceLibrary
from adapters.fake.voices import tone_clip
from core.domain.audio import WavEncoder
from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.events import (
    AudioChunk,
    AudioStored,
    Progress,
    SpeechCompleted,
    SpeechFailed,
    SpeechStarted,
)
from core.domain.records import default_key
from core.domain.request import (
    InlineVoice,
    NamedVoice,
    OutputTarget,
    Sampling,
    SpeechRequest,
)
from core.service.archive import AudioArchive
from core.service.generate_speech import GenerateSpeech

TEXT = "The quick brown fox jumps over the lazy dog, twice over."


def make(engine=None, store=None, **kwargs):
    engine = engine or FakeSpeechEngine()
    store = store if store is not None else InMemoryObjectStore()
    archive = AudioArchive(store, **{k: kwargs.pop(k) for k in ("default_bucket", "key_prefix", "now") if k in kwargs},
                           **{k: kwargs[k] for k in ("clock",) if k in kwargs})
    use_case = GenerateSpeech(engine, InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(), archive, **kwargs)
    return use_case, engine, store


def kinds(events):
    return [type(e).__name__ for e in events]


def test_events_come_in_order_and_chunks_make_the_audio():
    use_case, _, store = make()
    request = SpeechRequest(TEXT, voices=(NamedVoice("belinda"),), sampling=Sampling(seed=1),
                            output=OutputTarget("bucket-a", "out/x.wav"))
    events = list(use_case(request))
    names = kinds(events)
    assert names[0] == "SpeechStarted"
    assert names[-2:] == ["AudioStored", "SpeechCompleted"]
    middle = set(names[1:-2])
    assert middle == {"AudioChunk", "Progress"}
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    assert len(chunks) >= 2 and chunks[0].frame_index == 0
    done = events[-1]
    assert isinstance(done, SpeechCompleted)
    total = sum(len(c.samples) for c in chunks)
    assert done.duration_seconds == pytest.approx(total / 24000)
    assert done.audio.data[:4] == b"RIFF" and len(done.audio.data) == 44 + 2 * total
    assert done.audio_url == "memory://bucket-a/out/x.wav"
    assert done.frames == total // 960
    assert store.get("bucket-a", "out/x.wav") == done.audio.data
    record = json.loads(store.get("bucket-a", "out/x.wav.json"))
    assert record["request_id"] == request.request_id
    assert record["request"]["voices"] == ["belinda"]
    assert record["audio"]["bytes"] == len(done.audio.data)
    assert store.metadata("bucket-a", "out/x.wav")["request-id"] == request.request_id
    assert store.content_type("bucket-a", "out/x.wav") == "audio/wav"


def test_without_a_target_nothing_is_stored():
    use_case, _, store = make()
    events = list(use_case(SpeechRequest(TEXT)))
    assert "AudioStored" not in kinds(events)
    assert events[-1].audio_url is None
    assert store.objects == {}


def test_default_bucket_and_key_pattern():
    from datetime import datetime, timezone

    now = datetime(2026, 3, 4, tzinfo=timezone.utc)
    use_case, _, store = make(default_bucket="tts-out", key_prefix="p", now=lambda: now)
    request = SpeechRequest("Hi there.", request_id="req-1")
    stored = [e for e in use_case(request) if isinstance(e, AudioStored)][0]
    assert stored.key == "p/2026/03/04/req-1.wav"
    assert stored.record_key == "p/2026/03/04/req-1.wav.json"
    assert default_key("", "r", "flac", now) == "2026/03/04/r.flac"


def test_same_seed_same_audio_other_seed_other_audio():
    use_case, _, _ = make()

    def audio(seed):
        return list(use_case(SpeechRequest(TEXT, sampling=Sampling(seed=seed))))[-1].audio.data

    assert audio(7) == audio(7)
    assert audio(7) != audio(8)


def test_unknown_voice_fails_before_any_work():
    use_case, engine, _ = make()
    events = list(use_case(SpeechRequest(TEXT, voices=(NamedVoice("nobody"),))))
    assert kinds(events) == ["SpeechFailed"]
    assert events[0].error.code == "UNKNOWN_VOICE"
    assert engine.steps == 0


def test_inline_voice_reaches_the_engine():
    seen = {}

    class Recording(FakeSpeechEngine):
        def speak(self, request, voices, cancel, check=None):
            seen["voices"] = voices
            yield from super().speak(request, voices, cancel)

    use_case, _, _ = make(engine=Recording())
    clip = tone_clip(300.0, 0.2)
    list(use_case(SpeechRequest(TEXT, voices=(InlineVoice(clip, "a tone"),))))
    assert seen["voices"][0].audio == clip and seen["voices"][0].transcript == "a tone"


def test_engine_failure_becomes_inference_error_and_nothing_is_stored():
    engine = FakeSpeechEngine(fail=RuntimeError("CUDA error: device-side assert"))
    use_case, _, store = make(engine=engine)
    events = list(use_case(SpeechRequest(TEXT, output=OutputTarget("bucket-a", "k.wav"))))
    assert kinds(events)[0] == "SpeechStarted"
    failed = events[-1]
    assert isinstance(failed, SpeechFailed)
    assert failed.error.type is ErrorType.INFERENCE
    assert failed.error.code == "INFERENCE_FAILED"
    assert "RuntimeError" in failed.error.message and "device-side" not in failed.error.message  # no internals
    assert store.objects == {}


def test_engine_memory_error_is_out_of_memory():
    use_case, _, _ = make(engine=FakeSpeechEngine(fail=MemoryError()))
    assert list(use_case(SpeechRequest(TEXT)))[-1].error.code == "OUT_OF_MEMORY"


def test_engine_domain_error_passes_through():
    error = DomainError(ErrorType.MODEL, ErrorCode.MODEL_NOT_FOUND, "no weights at /x")
    use_case, _, _ = make(engine=FakeSpeechEngine(fail=error))
    assert list(use_case(SpeechRequest(TEXT)))[-1].error is error


def test_store_failure_is_s3_upload_error_and_nothing_half_stored():
    store = InMemoryObjectStore(fail_on=".json")  # the audio goes up, its record fails
    use_case, _, _ = make(store=store)
    events = list(use_case(SpeechRequest(TEXT, output=OutputTarget("bucket-a", "k.wav"))))
    assert isinstance(events[-1], SpeechFailed)
    assert events[-1].error.type is ErrorType.STORAGE
    assert store.objects == {}


def test_store_raising_a_plain_exception_is_s3_upload_error():
    class Broken(InMemoryObjectStore):
        def put(self, *a, **k):
            raise ConnectionResetError("reset by peer")

    use_case, _, _ = make(store=Broken())
    events = list(use_case(SpeechRequest(TEXT, output=OutputTarget("bucket-a", "k.wav"))))
    assert events[-1].error.type is ErrorType.STORAGE
    assert "ConnectionResetError" in events[-1].error.message and "reset by peer" not in events[-1].error.message


def test_key_without_any_bucket_is_rejected():
    use_case, engine, _ = make()
    events = list(use_case(SpeechRequest(TEXT, output=OutputTarget(None, "k.wav"))))
    assert events[-1].error.code == "INVALID_S3_BUCKET" and engine.steps == 0


def test_unavailable_format_is_rejected_before_work():
    use_case, engine, _ = make()
    events = list(use_case(SpeechRequest(TEXT, output_format="mp3")))
    assert kinds(events) == ["SpeechFailed"]
    assert events[0].error.code == "INVALID_OUTPUT_FORMAT" and engine.steps == 0


def test_cancel_stops_the_engine_and_fails_the_request():
    engine = FakeSpeechEngine()
    use_case, _, store = make(engine=engine)
    cancel = threading.Event()
    events = []
    for event in use_case(SpeechRequest("word " * 200, output=OutputTarget("bucket-a", "k.wav")), cancel):
        events.append(event)
        if isinstance(event, AudioChunk):
            cancel.set()
    assert events[-1].error.code == "CANCELLED"
    assert engine.steps == 10  # the first chunk, then nothing
    assert store.objects == {}


def test_progress_and_timings_are_reported():
    use_case, _, _ = make()
    events = list(use_case(SpeechRequest(TEXT), received_at=0.0))
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].chunks_done == progress[-1].chunks_total == 1
    done = events[-1]
    assert done.timings.first_audio is not None and done.timings.first_audio >= 0
    assert done.timings.total >= done.timings.decode > 0
    assert done.timings.queue > 0  # received at monotonic time 0, long ago
    assert done.real_time_factor > 0
    assert done.metadata["model"]["engine"] == "fake"
    assert isinstance(events[0], SpeechStarted) and events[0].sample_rate == 24000


def test_abandoned_stream_stops_the_engine():
    engine = FakeSpeechEngine()
    use_case, _, _ = make(engine=engine)
    stream = use_case(SpeechRequest("word " * 200))
    for event in stream:
        if isinstance(event, AudioChunk):
            break
    stream.close()
    assert engine.steps == 10


def test_an_existing_key_is_refused_before_any_work_unless_overwrite():
    use_case, engine, store = make()
    first = list(use_case(SpeechRequest(TEXT, output=OutputTarget("bucket-a", "x/weather.wav"))))
    assert isinstance(first[-1], SpeechCompleted)
    record = store.get("bucket-a", "x/weather.wav.json")
    steps = engine.steps
    again = list(use_case(SpeechRequest("Other words.", output=OutputTarget("bucket-a", "x/weather.wav"))))
    assert kinds(again) == ["SpeechFailed"] and again[0].error.code == "OBJECT_EXISTS"
    assert again[0].error.type is ErrorType.VALIDATION and engine.steps == steps  # nothing generated
    assert store.get("bucket-a", "x/weather.wav.json") == record
    replaced = list(use_case(SpeechRequest("Other words.", output=OutputTarget("bucket-a", "x/weather.wav",
                                                                               overwrite=True))))
    assert isinstance(replaced[-1], SpeechCompleted)
    assert json.loads(store.get("bucket-a", "x/weather.wav.json"))["request"]["text"] == "Other words."


def test_a_key_taken_between_the_check_and_the_write_is_not_replaced():
    class Racing(InMemoryObjectStore):
        def exists(self, bucket, key):
            return False  # the check saw nothing; another writer got there first

    store = Racing()
    store.put("bucket-a", "race.wav", b"theirs", "audio/wav")
    use_case, _, _ = make(store=store)
    events = list(use_case(SpeechRequest(TEXT, output=OutputTarget("bucket-a", "race.wav"))))
    assert events[-1].error.code == "OBJECT_EXISTS" and events[-1].error.type is ErrorType.STORAGE
    assert store.get("bucket-a", "race.wav") == b"theirs" and ("bucket-a", "race.wav.json") not in store.objects


def test_the_event_record_carries_real_upload_and_total_timings():
    ticks = iter(range(10_000))
    use_case, _, store = make(clock=lambda: float(next(ticks)))
    events = list(use_case(SpeechRequest(TEXT, output=OutputTarget("bucket-a", "timed.wav"))))
    record = json.loads(store.get("bucket-a", "timed.wav.json"))
    assert record["timings"]["upload"] > 0 and record["timings"]["total"] > record["timings"]["upload"]
    assert "model_path" not in json.dumps(record)
    completed = events[-1]
    assert completed.timings.upload == record["timings"]["upload"]
    assert completed.timings.total >= record["timings"]["total"]
