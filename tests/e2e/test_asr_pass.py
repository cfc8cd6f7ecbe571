"""The ASR pass on the real parts: the demo Higgs bundle through HiggsSpeechEngine, and a tiny
random-weight Whisper loaded through the same code path as a real one (HIGGS_ASR_MODEL ->
the container -> WhisperTranscriber). Regenerations on the real runtime give exactly the audio
of the seed they were made with, and leave batching and the prefix cache as they were."""

import threading
from array import array
from dataclasses import replace

import numpy as np
import pytest

from adapters.fake import FakeTranscriber, InMemoryVoiceLibrary
from adapters.higgs import HiggsSpeechEngine
from adapters.voices import VolumeVoiceLibrary
from adapters.whisper import WhisperTranscriber
from adapters.whisper.wer import error_rate
from app.container import build_container
from app.settings import Settings
from boson_multimodal.checking import ATTEMPT_STRIDE
from core.domain.audio import WavEncoder
from core.domain.events import AudioChunk, ChunkVerified, SpeechCompleted, SpeechFailed
from core.domain.request import Chunking, ChunkMethod, NamedVoice, Sampling, SpeechRequest
from core.domain.verification import Timestamps, Verification, VerifyMode
from core.service.generate_speech import GenerateSpeech
from core.service.verification import Asr

pytestmark = pytest.mark.slow

SAMPLING = Sampling(seed=5, max_new_tokens=60)
ONE_CHUNK = "Hello there, how are you?"
THREE_CHUNKS = "One two three four. Five six seven eight. Nine ten eleven twelve."
WORDS3 = Chunking(ChunkMethod.WORD, max_word_num=4)


@pytest.fixture(scope="module")
def engine(demo_bundle):
    engine = HiggsSpeechEngine(demo_bundle, device="cpu", max_batch=4, max_cache_len=2048, prefix_cache_mb=64)
    engine.warm_up()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def whisper(demo_asr):
    transcriber = WhisperTranscriber(demo_asr, batch_size=8, max_wait=0.05)
    transcriber.warm_up()
    return transcriber


def use_case(engine, demo_bundle, transcriber=None):
    return GenerateSpeech(engine, VolumeVoiceLibrary(demo_bundle.voices), WavEncoder(),
                          asr=Asr(transcriber, error_rate) if transcriber is not None else None)


def finish(events):
    events = list(events)
    assert isinstance(events[-1], SpeechCompleted), events[-1]
    return events, events[-1]


def pcm(done):
    return bytes(done.audio.data[44:])


def test_the_container_loads_the_asr_model_from_the_setting_and_ready_waits_for_it(demo_bundle, demo_asr):
    container = build_container(Settings(model_path=demo_bundle.root, asr_model=str(demo_asr), device="cpu",
                                         store="none"))
    service = container.speech_service()
    assert not service.is_ready()
    service.warm_up()
    assert service.is_ready()
    assert service.asr()["asr_model"] == str(demo_asr) and service.asr()["asr_dtype"] == "float32"
    events, done = finish(service.speak(SpeechRequest(THREE_CHUNKS, sampling=SAMPLING, chunking=WORDS3,
                                                      verification=Verification("report"), timestamps="word")))
    assert len(done.metadata["verification"]) == 3
    service.close()


def test_transcripts_and_word_timings_have_the_right_shape_and_clock(engine, demo_bundle, whisper):
    events, done = finish(use_case(engine, demo_bundle, whisper)(SpeechRequest(
        THREE_CHUNKS, sampling=SAMPLING, chunking=WORDS3, verification=Verification(VerifyMode.REPORT),
        timestamps=Timestamps.WORD)))
    verified = [e.result for e in events if isinstance(e, ChunkVerified)]
    assert [r.chunk for r in verified] == [0, 1, 2]
    frames = done.metadata["chunk_frames"]
    offsets = np.cumsum([0, *frames]) / 25.0
    for r in verified:
        assert isinstance(r.transcript, str) and r.attempts == 1 and r.kept == 1
        assert r.wer is not None and r.wer >= 0
        assert r.wer == pytest.approx(error_rate(r.text, r.transcript), abs=1e-4)
        for w in r.words:  # each chunk's words inside its own stretch of the output
            assert offsets[r.chunk] - 1e-3 <= w.start <= w.end <= offsets[r.chunk + 1] + 1e-3
    words = done.metadata["words"]
    assert words == [w.to_dict() for r in verified for w in r.words]
    assert all(a["end"] <= b["start"] + 1e-3 for a, b in zip(words, words[1:]))
    assert words and words[-1]["end"] <= done.duration_seconds + 1e-3
    assert done.timings.asr > 0


def test_report_leaves_the_audio_exactly_as_without_a_check(engine, demo_bundle, whisper):
    request = SpeechRequest(THREE_CHUNKS, sampling=SAMPLING, chunking=WORDS3)
    _, plain = finish(use_case(engine, demo_bundle)(request))
    _, reported = finish(use_case(engine, demo_bundle, whisper)(replace(request, verification=Verification("report"),
                                                                        timestamps="word")))
    assert pcm(plain) == pcm(reported)


def test_a_regenerated_chunk_is_the_chunk_its_seed_makes(engine, demo_bundle):
    """Chunk 1 fails once: what goes out for it is attempt 2, made with seed + 1 + 2**32, and
    chunks 0 and 2 are what they would be anyway (the context is the kept attempt)."""
    texts = ["one two three four.", "five six seven eight.", "nine ten eleven twelve."]
    script = [texts[0], "completely different words here", texts[1], texts[2]]
    checked = use_case(engine, demo_bundle, FakeTranscriber(script))
    events, done = finish(checked(SpeechRequest(THREE_CHUNKS, sampling=SAMPLING, chunking=WORDS3,
                                                verification=Verification(VerifyMode.ON, 0.25, 3))))
    results = done.metadata["verification"]
    assert [(r["attempts"], r["kept"], r["passed"]) for r in results] == [(1, 1, True), (2, 2, True), (1, 1, True)]
    frames = done.metadata["chunk_frames"]
    # chunk 0 is what the plain request makes for it (the same seed, no context yet)
    _, plain = finish(use_case(engine, demo_bundle)(SpeechRequest(THREE_CHUNKS, sampling=SAMPLING, chunking=WORDS3)))
    assert plain.metadata["chunk_frames"][0] == frames[0]
    head = frames[0] * 960 * 2 // 2
    assert pcm(done)[:head] == pcm(plain)[:head]
    assert pcm(done) != pcm(plain)  # chunk 1 is another attempt
    # the whole: held audio goes out in order, every sample once
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert sum(len(c.samples) for c in chunks) == len(pcm(done)) // 2
    assert done.metadata["decode_steps"] > sum(frames)  # the discarded attempt's steps are counted


def test_kept_attempt_equals_the_seeded_chunk_bit_for_bit(engine, demo_bundle):
    """One chunk that fails once: the response is exactly the plain request with seed + 2**32."""
    checked = use_case(engine, demo_bundle, FakeTranscriber(["nothing like it", ONE_CHUNK]))
    _, done = finish(checked(SpeechRequest(ONE_CHUNK, sampling=SAMPLING,
                                           verification=Verification(VerifyMode.ON, 0.25, 2))))
    assert done.metadata["verification"][0]["kept"] == 2
    _, moved = finish(use_case(engine, demo_bundle)(SpeechRequest(
        ONE_CHUNK, sampling=replace(SAMPLING, seed=SAMPLING.seed + ATTEMPT_STRIDE))))
    _, first = finish(use_case(engine, demo_bundle)(SpeechRequest(ONE_CHUNK, sampling=SAMPLING)))
    assert pcm(done) == pcm(moved) != pcm(first)


def test_the_best_attempt_is_kept_on_the_real_runtime(engine, demo_bundle):
    checked = use_case(engine, demo_bundle, FakeTranscriber(["how are", "nothing", "hello there how"]))
    _, done = finish(checked(SpeechRequest(ONE_CHUNK, sampling=SAMPLING,
                                           verification=Verification(VerifyMode.ON, 0.1, 3))))
    r = done.metadata["verification"][0]
    assert (r["attempts"], r["kept"], r["passed"]) == (3, 3, False)
    _, third = finish(use_case(engine, demo_bundle)(SpeechRequest(
        ONE_CHUNK, sampling=replace(SAMPLING, seed=SAMPLING.seed + 2 * ATTEMPT_STRIDE))))
    assert pcm(done) == pcm(third)


def test_batching_and_the_prefix_cache_stay_correct_with_regenerations(engine, demo_bundle):
    """A request that regenerates every chunk once shares the batch with plain ones; each gives
    the audio it gives alone, and the voice's prefix is computed once."""
    voice = (NamedVoice("belinda"),)
    plain = use_case(engine, demo_bundle)
    requests = [SpeechRequest(THREE_CHUNKS, voices=voice, sampling=replace(SAMPLING, seed=s), chunking=WORDS3)
                for s in (21, 22)]
    alone = [pcm(finish(plain(r))[1]) for r in requests]
    retrying = SpeechRequest(THREE_CHUNKS, voices=voice, sampling=SAMPLING, chunking=WORDS3,
                             verification=Verification(VerifyMode.ON, 0.0, 2))
    retry_alone = pcm(finish(use_case(engine, demo_bundle, FakeTranscriber(["x"]))(retrying))[1])
    results = {}

    def go(name, run, request):
        results[name] = finish(run(request))[1]

    threads = [threading.Thread(target=go, args=(i, plain, r)) for i, r in enumerate(requests)]
    threads.append(threading.Thread(target=go, args=("retry", use_case(engine, demo_bundle,
                                                                      FakeTranscriber(["x"])), retrying)))
    hits_before = engine.load().prefix_hits
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert [pcm(results[i]) for i in range(2)] == alone
    assert pcm(results["retry"]) == retry_alone
    assert results["retry"].metadata["prefix_cache"][0] in ("hit", "miss")
    assert all(c == "hit" for c in results["retry"].metadata["prefix_cache"][1:])
    assert engine.load().prefix_hits > hits_before  # the retries reuse the voice's prefix


def test_a_failing_whisper_degrades_to_unverified_audio(engine, demo_bundle, demo_asr, caplog):
    broken = WhisperTranscriber(demo_asr)
    broken.warm_up()
    broken._pipe = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("CUDA error: device-side assert"))
    _, done = finish(use_case(engine, demo_bundle, broken)(SpeechRequest(
        ONE_CHUNK, sampling=SAMPLING, verification=Verification(True), timestamps="word")))
    r = done.metadata["verification"][0]
    assert r["passed"] is False and "RuntimeError" in r["error"] and done.duration_seconds > 0
    _, plain = finish(use_case(engine, demo_bundle)(SpeechRequest(ONE_CHUNK, sampling=SAMPLING)))
    assert pcm(done) == pcm(plain)


def test_whisper_batches_overlapping_calls_and_hears_the_same_as_alone(whisper):
    rng = np.random.default_rng(3)
    clips = [array("f", (rng.standard_normal(int(24000 * s)) * 0.1).astype(np.float32).tobytes())
             for s in (0.5, 1.0, 2.0, 3.5, 1.5, 0.8)]
    alone = [whisper.transcribe(c, 24000, words=True) for c in clips]
    before = whisper.batches
    together = [None] * len(clips)
    barrier = threading.Barrier(len(clips))

    def go(i):
        barrier.wait()
        together[i] = whisper.transcribe(clips[i], 24000, words=True)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [t.text for t in together] == [a.text for a in alone]
    assert whisper.batches - before < len(clips)  # overlapping calls ran as fewer batches
    for clip, heard in zip(clips, together):
        for w in heard.words:
            assert 0 <= w.start <= w.end <= len(clip) / 24000 + 1e-3


def test_whisper_hears_long_audio_in_windows(whisper):
    clip = array("f", (np.random.default_rng(4).standard_normal(24000 * 45) * 0.1).astype(np.float32).tobytes())
    heard = whisper.transcribe(clip, 24000, words=True)
    assert all(0 <= w.start <= w.end <= 45.0 + 1e-3 for w in heard.words)


def test_a_missing_asr_model_is_model_not_found(tmp_path):
    from core.domain.errors import DomainError, ErrorCode

    with pytest.raises(DomainError) as caught:
        WhisperTranscriber(tmp_path / "nowhere", name="openai/whisper-large-v3-turbo").warm_up()
    assert caught.value.code == ErrorCode.MODEL_NOT_FOUND
    assert "nowhere" not in caught.value.message  # no filesystem layout in answers


def test_voices_library_in_memory_runs_with_the_fake_transcriber_too(engine):
    """The pass needs nothing of the voice library: a request with no voice on an in-memory one."""
    checked = GenerateSpeech(engine, InMemoryVoiceLibrary(), WavEncoder(),
                             asr=Asr(FakeTranscriber([ONE_CHUNK]), error_rate))
    events = list(checked(SpeechRequest(ONE_CHUNK, sampling=SAMPLING, verification=Verification(True))))
    assert not any(isinstance(e, SpeechFailed) for e in events)
