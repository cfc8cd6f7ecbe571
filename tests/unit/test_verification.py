"""The ASR pass's policy, on the fake engine and a scripted transcriber: which chunks are
generated again, with which seeds, which attempt is kept, what is reported and when."""

import itertools
import logging
import math
import random

import pytest

from adapters.fake import FakeSpeechEngine, FakeTranscriber, InMemoryObjectStore, InMemoryVoiceLibrary
from adapters.fake.engine import ATTEMPT_STRIDE
from adapters.whisper.wer import error_rate
from core.domain.audio import WavEncoder
from core.domain.errors import DomainError, ErrorCode
from core.domain.events import AudioChunk, ChunkVerified, SpeechCompleted, SpeechFailed
from core.domain.request import Chunking, ChunkMethod, OutputTarget, Sampling, SpeechRequest
from core.domain.verification import MAX_VERIFY_ATTEMPTS, Timestamps, Verification, VerifyMode
from core.service.archive import AudioArchive
from core.service.generate_speech import GenerateSpeech
from core.service.result_cache import ResultCache
from core.service.verification import Asr

# three chunks on the fake: its budget (max_new_tokens frames) splits the text by words
TEXT = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa " * 2
SAMPLING = Sampling(seed=11, max_new_tokens=150)
RIGHT = "alpha bravo charlie"


def chunks_of(text=TEXT, sampling=SAMPLING):
    from adapters.fake.engine import _chunks, _split_words
    from core.domain.request import Synthesis

    return _split_words(text, _chunks(Synthesis(text, sampling=sampling)))


def make(heard, verification=None, stretcher=None, store=None, **asr):
    transcriber = heard if isinstance(heard, FakeTranscriber) else FakeTranscriber(heard, **asr)
    engine = FakeSpeechEngine()
    use_case = GenerateSpeech(engine, InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(), AudioArchive(store),
                              asr=Asr(transcriber, error_rate), verification=verification, stretcher=stretcher)
    return use_case, transcriber


def run(use_case, **fields):
    request = SpeechRequest(TEXT, sampling=fields.pop("sampling", SAMPLING), **fields)
    events = list(use_case(request))
    assert not any(isinstance(e, SpeechFailed) for e in events), events[-1]
    return events, events[-1]


def solo_audio(seed, text):
    """The fake's audio for one chunk's text with one seed, as a plain request makes it."""
    engine = FakeSpeechEngine()
    use_case = GenerateSpeech(engine, InMemoryVoiceLibrary.with_demo_voices(), WavEncoder())
    request = SpeechRequest(text, sampling=Sampling(seed=seed, max_new_tokens=150),
                            chunking=Chunking(ChunkMethod.NONE))
    done = list(use_case(request))[-1]
    assert isinstance(done, SpeechCompleted)
    return bytes(done.audio.data[44:])


def test_the_text_is_three_chunks():
    assert len(chunks_of()) == 3


def test_a_chunk_above_max_wer_is_generated_again_with_the_next_seed_and_the_passing_one_kept():
    texts = chunks_of()
    # chunk 0: wrong, then right; chunks 1 and 2: right at once
    script = ["something else entirely", texts[0], texts[1], texts[2]]
    use_case, transcriber = make(script)
    events, done = run(use_case, verification=Verification(VerifyMode.ON, 0.25, 3))
    results = done.metadata["verification"]
    assert [(r["chunk"], r["attempts"], r["kept"], r["passed"]) for r in results] == \
        [(0, 2, 2, True), (1, 1, 1, True), (2, 1, 1, True)]
    assert results[0]["wer"] == 0 and results[0]["transcript"] == texts[0]
    assert len(transcriber.calls) == 4
    # the kept attempt of chunk 0 is the chunk spoken with seed + 0 + 1 * ATTEMPT_STRIDE
    pcm = bytes(done.audio.data[44:])
    first = solo_audio(SAMPLING.seed + ATTEMPT_STRIDE, texts[0])
    assert pcm.startswith(first)
    assert not pcm.startswith(solo_audio(SAMPLING.seed, texts[0]))
    # chunk 1 keeps its first attempt: seed + 1
    assert pcm[len(first):].startswith(solo_audio(SAMPLING.seed + 1, texts[1]))


@pytest.mark.parametrize("wers", [(0.9, 0.4, 0.6), (0.5, 0.9, 0.8), (0.7, 0.7, 0.3), (1.0, 0.3, 0.3)])
def test_the_best_attempt_is_kept_when_none_passes(wers):
    texts = chunks_of()
    words = texts[0].split()

    def hearing(wer):  # a transcript with round(wer * n) words wrong
        wrong = round(wer * len(words))
        return " ".join(["zzz"] * wrong + words[wrong:])

    script = [hearing(w) for w in wers] + texts[1:]
    use_case, _ = make(script)
    _, done = run(use_case, verification=Verification(VerifyMode.ON, 0.2, 3))
    first = done.metadata["verification"][0]
    scores = [error_rate(texts[0], hearing(w)) for w in wers]
    best = min(range(3), key=lambda i: (scores[i], i))
    assert first["attempts"] == 3 and first["kept"] == best + 1 and not first["passed"]
    assert first["wer"] == pytest.approx(scores[best], abs=1e-4)


@pytest.mark.parametrize("attempts", range(1, MAX_VERIFY_ATTEMPTS + 1))
def test_attempts_are_bounded(attempts):
    use_case, transcriber = make(["never what was said"])
    events, done = run(use_case, verification=Verification(VerifyMode.ON, 0.0, attempts))
    assert len(transcriber.calls) == 3 * attempts
    assert all(r["attempts"] == attempts and r["kept"] == 1 and not r["passed"]
               for r in done.metadata["verification"])
    assert len([e for e in events if isinstance(e, ChunkVerified)]) == 3


def test_report_never_regenerates_and_streams_before_it_reports():
    use_case, transcriber = make(["never what was said"])
    events, done = run(use_case, verification=Verification(VerifyMode.REPORT, 0.0, 5))
    assert len(transcriber.calls) == 3
    assert all(r["attempts"] == 1 and not r["passed"] for r in done.metadata["verification"])
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("AudioChunk") < kinds.index("ChunkVerified")
    # the audio a held request keeps when every chunk passes at once
    held, _ = make(chunks_of())
    assert run(held, verification=Verification(VerifyMode.ON))[1].audio.data == done.audio.data


def test_verify_on_holds_a_chunk_until_it_is_judged():
    texts = chunks_of()
    use_case, _ = make(texts)
    events, _ = run(use_case, verification=Verification(VerifyMode.ON))
    order = [("audio" if isinstance(e, AudioChunk) else "verified") for e in events
             if isinstance(e, (AudioChunk, ChunkVerified))]
    # each chunk's verdict comes before its audio: verified, audio..., verified, audio...
    assert order[0] == "verified" and order.count("verified") == 3
    first_audio = [i for i, kind in enumerate(order) if kind == "audio"]
    assert first_audio[0] == 1


def test_a_failing_transcriber_leaves_the_audio_unverified_with_a_warning(caplog):
    transcriber = FakeTranscriber(["x"], fail=RuntimeError("the GPU fell over"))
    use_case, _ = make(transcriber)
    with caplog.at_level(logging.WARNING):
        events, done = run(use_case, verification=Verification(VerifyMode.ON, 0.25, 3),
                           timestamps=Timestamps.WORD)
    assert isinstance(done, SpeechCompleted) and done.duration_seconds > 0
    assert len(transcriber.calls) == 3  # never retried: the audio is not known to be wrong
    for r in done.metadata["verification"]:
        assert r["passed"] is False and r["wer"] is None and "RuntimeError" in r["error"]
    assert done.metadata["words"] == []
    assert "kept unverified" in caplog.text


def test_a_transcriber_failing_once_is_recovered_on_the_next_chunk():
    texts = chunks_of()
    transcriber = FakeTranscriber(lambda n: texts[min(n, 2)], fail={1: MemoryError()})
    use_case, _ = make(transcriber)
    _, done = run(use_case, verification=Verification(VerifyMode.ON))
    assert [r["passed"] for r in done.metadata["verification"]] == [True, False, True]


def test_without_an_asr_model_the_request_is_refused_before_it_starts():
    use_case = GenerateSpeech(FakeSpeechEngine(), InMemoryVoiceLibrary.with_demo_voices(), WavEncoder())
    for fields, field in (({"verification": Verification(True)}, "verify"),
                          ({"verification": Verification("report")}, "verify"),
                          ({"timestamps": "word"}, "timestamps")):
        events = list(use_case(SpeechRequest(TEXT, **fields)))
        assert len(events) == 1 and isinstance(events[0], SpeechFailed)
        assert events[0].error.code == ErrorCode.ASR_NOT_CONFIGURED
        assert events[0].error.details["field"] == field


def test_verify_off_and_no_timestamps_never_transcribes():
    use_case, transcriber = make(["x"])
    events, done = run(use_case, verification=Verification(False))
    assert transcriber.calls == [] and "verification" not in done.metadata and "words" not in done.metadata
    assert not any(isinstance(e, ChunkVerified) for e in events)


def test_the_server_default_applies_to_requests_that_leave_it():
    texts = chunks_of()
    use_case, transcriber = make(texts, verification=Verification(VerifyMode.REPORT, 0.1, 4))
    _, done = run(use_case)
    assert len(transcriber.calls) == 3 and len(done.metadata["verification"]) == 3
    # a request's own fields win over the default, one by one
    use_case, transcriber = make(["wrong"], verification=Verification(VerifyMode.REPORT, 0.1, 4))
    _, done = run(use_case, verification=Verification(VerifyMode.ON, None, None))
    assert len(transcriber.calls) == 3 * 4


def test_word_timings_are_on_the_output_clock():
    texts = chunks_of()
    use_case, _ = make(texts)
    _, done = run(use_case, timestamps=Timestamps.WORD)
    words = done.metadata["words"]
    assert [w["word"] for w in words] == " ".join(texts).split()
    assert "verification" not in done.metadata  # timings only: nothing scored
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and words[0]["start"] == 0.0
    assert all(w["start"] <= w["end"] for w in words)
    assert words[-1]["end"] == pytest.approx(done.duration_seconds, abs=1e-3)
    # a chunk's first word starts where the audio of the chunks before it ended
    chunk_seconds = [len(t) / 14.0 for t in texts]  # the fake speaks 14 characters a second
    first_of_chunk_1 = words[len(texts[0].split())]["start"]
    assert first_of_chunk_1 == pytest.approx(math.ceil(chunk_seconds[0] * 25) / 25, abs=1e-3)


def test_word_timings_follow_the_speed():
    from adapters.pedalboard import RubberBandStretcher

    texts = chunks_of()
    for speed in (0.5, 2.0):
        use_case, _ = make(texts, stretcher=RubberBandStretcher())
        _, done = run(use_case, timestamps=Timestamps.WORD, speed=speed)
        words = done.metadata["words"]
        assert words[-1]["end"] == pytest.approx(done.duration_seconds, rel=0.02)


def test_captions_are_stored_next_to_the_audio_and_named_in_the_record():
    import json

    texts = chunks_of()
    store = InMemoryObjectStore()
    use_case, _ = make(texts, store=store)
    events, done = run(use_case, timestamps=Timestamps.WORD, verification=Verification("report"),
                       output=OutputTarget("bucket-a", "out/a.wav"))
    stored = next(e for e in events if type(e).__name__ == "AudioStored")
    assert stored.captions_key == "out/a.wav.vtt"
    vtt = store.get("bucket-a", "out/a.wav.vtt").decode()
    assert vtt.startswith("WEBVTT") and texts[0].split()[0] in vtt
    record = json.loads(store.get("bucket-a", "out/a.wav.json"))
    assert record["captions"] == {"key": "out/a.wav.vtt", "format": "vtt"}
    assert len(record["verification"]) == 3 and record["words"] == done.metadata["words"]
    assert record["request"]["verify"]["mode"] == "report" and record["request"]["timestamps"] == "word"
    assert done.timings.asr > 0


def test_a_request_with_the_asr_pass_is_not_served_from_the_result_cache():
    assert not ResultCache.eligible(SpeechRequest("hi", sampling=Sampling(seed=1), timestamps="word"))
    assert not ResultCache.eligible(SpeechRequest("hi", sampling=Sampling(seed=1), verification=Verification(True)))
    assert ResultCache.eligible(SpeechRequest("hi", sampling=Sampling(seed=1), verification=Verification(False)))


def test_cancelling_while_a_chunk_is_held_sends_nothing_of_it():
    import threading

    texts = chunks_of()
    cancel = threading.Event()
    transcriber = FakeTranscriber(lambda n: (cancel.set(), "wrong")[1] if n == 0 else texts[0])
    use_case, _ = make(transcriber)
    events = list(use_case(SpeechRequest(TEXT, sampling=SAMPLING, verification=Verification(True, 0.25, 3)),
                           cancel))
    assert isinstance(events[-1], SpeechFailed) and events[-1].error.code == ErrorCode.CANCELLED
    assert not any(isinstance(e, AudioChunk) for e in events)


# -- the request's fields -------------------------------------------------------------------


@pytest.mark.parametrize("mode", [True, False, "on", "off", "report", None, VerifyMode.ON])
def test_every_mode_is_taken(mode):
    v = Verification(mode)
    assert v.mode is None if mode is None else isinstance(v.mode, VerifyMode)


HOSTILE = [math.nan, math.inf, -math.inf, -0.01, 1.0000001, 2, -1, 10**30, "0.5", [], {}, True, float("1e308")]


@pytest.mark.parametrize("value", HOSTILE)
def test_max_wer_out_of_its_range_is_refused(value):
    with pytest.raises(DomainError) as caught:
        Verification(True, value)
    assert caught.value.code == ErrorCode.INVALID_VERIFICATION and caught.value.details["field"] == "max_wer"


@pytest.mark.parametrize("value", [0, -1, MAX_VERIFY_ATTEMPTS + 1, 10**30, 1.0, 2.5, "2", True, math.nan])
def test_max_attempts_out_of_its_range_is_refused(value):
    with pytest.raises(DomainError) as caught:
        Verification(True, None, value)
    assert caught.value.code == ErrorCode.INVALID_VERIFICATION and caught.value.details["field"] == "max_attempts"


@pytest.mark.parametrize("value", ["yes", "ON ", "", 1, 0, 2.0, [], {"mode": "on"}, "\ud800", "report\x00"])
def test_unknown_modes_are_refused(value):
    with pytest.raises(DomainError) as caught:
        Verification(value)
    assert caught.value.code == ErrorCode.INVALID_VERIFICATION and caught.value.details["field"] == "verify"


@pytest.mark.parametrize("value", ["words", "WORD", "", None, 1, ["word"], "segment"])
def test_unknown_timestamps_are_refused(value):
    with pytest.raises(DomainError) as caught:
        SpeechRequest("hi", timestamps=value)
    assert caught.value.code == ErrorCode.INVALID_VERIFICATION and caught.value.details["field"] == "timestamps"


@pytest.mark.parametrize("wer,attempts", list(itertools.product([0, 0.25, 1], [1, MAX_VERIFY_ATTEMPTS])))
def test_the_edges_of_every_range_are_taken(wer, attempts):
    v = Verification("on", wer, attempts).with_defaults()
    assert (v.max_wer, v.max_attempts) == (wer, attempts)


def test_defaults_fill_only_what_is_left():
    default = Verification("report", 0.5, 3)
    assert Verification().with_defaults(default) == Verification(VerifyMode.REPORT, 0.5, 3)
    assert Verification(False).with_defaults(default) == Verification(VerifyMode.OFF, 0.5, 3)
    assert Verification(None, 0.1).with_defaults(default) == Verification(VerifyMode.REPORT, 0.1, 3)
    assert Verification().with_defaults() == Verification(VerifyMode.OFF, 0.25, 2)


def test_random_scripts_keep_every_invariant():
    """Generated: scripts of right and wrong transcripts for every mode and attempt count; the
    kept attempt is always the first that passed, or the best, and never beyond the bound."""
    texts = chunks_of()
    rng = random.Random(7)
    for _ in range(40):
        mode = rng.choice([VerifyMode.ON, VerifyMode.REPORT])
        attempts = rng.randint(1, MAX_VERIFY_ATTEMPTS)
        max_wer = rng.choice([0.0, 0.25, 0.5, 1.0])
        script = [rng.choice([texts[0], "zzz", "alpha bravo", texts[1]]) for _ in range(3 * attempts)]
        use_case, _ = make(script)
        _, done = run(use_case, verification=Verification(mode, max_wer, attempts))
        results = done.metadata["verification"]
        assert len(results) == 3
        for r in results:
            assert 1 <= r["kept"] <= r["attempts"] <= (attempts if mode is VerifyMode.ON else 1)
            assert r["passed"] == (r["wer"] <= max_wer)
            if r["attempts"] < (attempts if mode is VerifyMode.ON else 1):
                assert r["passed"]  # it stopped early only because it passed


def test_the_synthesis_span_says_what_the_pass_did():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from adapters.otel import OtelTracer
    from app.settings import Settings
    from app.telemetry import make_tracer_provider

    exporter = InMemorySpanExporter()
    provider = make_tracer_provider(Settings(), exporter)
    texts = chunks_of()
    use_case = GenerateSpeech(FakeSpeechEngine(), InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(),
                              tracer=OtelTracer(provider),
                              asr=Asr(FakeTranscriber(["wrong", texts[0], texts[1], "wrong", "wrong"]), error_rate))
    run(use_case, verification=Verification(VerifyMode.ON, 0.25, 2))
    span = next(s for s in exporter.get_finished_spans() if s.name == "speech.synthesize")
    assert span.attributes["speech.verify.chunks"] == 3
    assert span.attributes["speech.verify.regenerated"] == 2
    assert span.attributes["speech.verify.failing"] == 1
    assert span.attributes["speech.asr_seconds"] >= 0
