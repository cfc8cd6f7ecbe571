"""The RunPod adapter on the fake engine: input mapping, response shapes through the runpod
SDK's own job runner, limits, progress, tracing, and the health server."""

import asyncio
import base64
import json
import time

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from runpod.serverless.modules.rp_job import run_job, run_job_generator

from adapters.fake import FakeSpeechEngine, InMemoryObjectStore, InMemoryVoiceLibrary
from adapters.fake.voices import tone_clip
from adapters.otel import OtelTracer
from adapters.runpod import RunpodWorker, WorkerMetrics, WorkerOptions, request_from_input
from adapters.runpod.schema import FIELDS, REQUEST_FIELDS
from app.settings import Settings
from app.telemetry import make_tracer_provider
from core.domain.audio import WavEncoder
from core.domain.errors import DomainError
from core.domain.request import ChunkMethod, InlineVoice, NamedVoice
from core.service import GenerateSpeech, SpeechService
from core.service.archive import AudioArchive

GOOD = {"transcript": "Hello from the fake engine.", "ref_audio": "belinda", "seed": 3}


def make_worker(engine=None, tracer=None, progress=None, encoder=None, **options):
    engine = engine or FakeSpeechEngine()
    use_case = GenerateSpeech(engine, InMemoryVoiceLibrary.with_demo_voices(), encoder or WavEncoder(),
                              AudioArchive(InMemoryObjectStore(), tracer=tracer), tracer=tracer)
    metrics = WorkerMetrics(gpu_memory=lambda: {"allocated": 123}, engine_load=engine.load)
    kwargs = {"progress": progress} if progress else {}
    service = SpeechService(use_case, engine, InMemoryVoiceLibrary.with_demo_voices())
    return RunpodWorker(service, metrics, WorkerOptions(**options), tracer=tracer, **kwargs), metrics


def run(worker, job_input, job_id="job-1"):
    """Through the SDK's own runner, as the local API and the production loop call it."""
    return asyncio.run(run_job(worker.handle, {"id": job_id, "input": job_input}))


def run_stream(worker, job_input, job_id="job-1"):
    async def collect():
        return [item async for item in run_job_generator(worker.handle_stream, {"id": job_id, "input": job_input})]

    return asyncio.run(collect())


# -- input ------------------------------------------------------------------------------------


def test_the_design_fields_map_onto_the_request():
    clip = tone_clip(1.0)
    request = request_from_input({
        "transcript": "[SPEAKER0] Hi. [SPEAKER1] Hello.", "ref_audio": "belinda,en_man",
        "scene_prompt": "A quiet room.", "temperature": 0.7, "top_k": 20, "top_p": 0.8,
        "max_new_tokens": 300, "chunk_method": "speaker", "chunk_max_word_num": 50,
        "chunk_max_num_turns": 2, "ras_win_len": 0, "ras_win_max_num_repeat": 3, "seed": 11,
        "s3_bucket": "my-bucket", "s3_key": "a/b.flac", "output_format": "flac",
        "ref_audio_base64": base64.b64encode(clip).decode(), "ref_audio_transcript": "a tone",
    }, request_id="job-9")
    assert request.request_id == "job-9"
    assert request.voices[:2] == (NamedVoice("belinda"), NamedVoice("en_man"))
    assert isinstance(request.voices[2], InlineVoice) and request.voices[2].audio == clip
    s = request.sampling
    assert (s.temperature, s.top_k, s.top_p, s.max_new_tokens, s.seed) == (0.7, 20, 0.8, 300, 11)
    assert (s.ras_win_len, s.ras_win_max_num_repeat) == (0, 3)
    assert request.chunking.method is ChunkMethod.SPEAKER and request.chunking.max_num_turns == 2
    assert (request.output.bucket, request.output.key) == ("my-bucket", "a/b.flac")
    assert request.output_format.value == "flac" and request.scene_prompt == "A quiet room."
    assert set(REQUEST_FIELDS) <= FIELDS


def test_null_means_the_default():
    request = request_from_input({"transcript": "Hi.", "seed": None, "top_k": None, "s3_key": None})
    assert request.sampling.seed is None and request.sampling.top_k == 50 and request.output is None


@pytest.mark.parametrize("job_input, code", [
    ("just text", "INVALID_INPUT"),
    ([{"transcript": "x"}], "INVALID_INPUT"),
    ({}, "INVALID_TRANSCRIPT"),
    ({"transcript": 42}, "INVALID_TRANSCRIPT"),
    ({"transcript": "Hi.", "voice": "belinda"}, "UNKNOWN_FIELD"),
    ({"transcript": "Hi.", "temperature": "hot"}, "INVALID_TEMPERATURE"),
    ({"transcript": "Hi.", "ref_audio": "../etc"}, "INVALID_VOICE_NAME"),
    ({"transcript": "Hi.", "ref_audio_base64": "not base64!"}, "INVALID_REFERENCE_AUDIO"),
    ({"transcript": "Hi.", "ref_audio_transcript": "words"}, "INVALID_REFERENCE_AUDIO"),
    ({"transcript": "Hi.", "chunk_method": "sentence"}, "INVALID_CHUNKING"),
    ({"transcript": "Hi.", "output_format": "aiff"}, "INVALID_OUTPUT_FORMAT"),
])
def test_bad_input_is_named(job_input, code):
    with pytest.raises(DomainError) as caught:
        request_from_input(job_input)
    assert caught.value.code == code


def test_unknown_fields_are_all_named():
    with pytest.raises(DomainError) as caught:
        request_from_input({"transcript": "Hi.", "zeta": 1, "alpha": 2})
    assert caught.value.details["actual"] == ["alpha", "zeta"] and caught.value.details["field"] == "alpha"
    assert "transcript" in caught.value.details["allowed"]


# -- output through the SDK's runner ------------------------------------------------------------


def test_a_failed_request_is_a_completed_job_whose_output_says_why():
    worker, metrics = make_worker()
    result = run(worker, {"transcript": "", "ref_audio": "belinda"})
    # the SDK would move a top-level "error" out of the output and fail the job
    assert set(result) == {"output"}
    output = result["output"]
    assert output["success"] is False
    assert output["error"]["type"] == "validation_error"
    assert output["error"]["code"] == "INVALID_TRANSCRIPT"
    assert set(output["error"]) == {"type", "message", "code", "details"}
    assert json.loads(json.dumps(output))["error"]["code"] == "INVALID_TRANSCRIPT"
    assert 'higgs_tts_errors_total{code="INVALID_TRANSCRIPT",type="validation_error"} 1.0' in metrics.render().decode()


def test_a_good_request_answers_the_design_response_with_audio_inline():
    worker, metrics = make_worker()
    output = run(worker, GOOD)["output"]
    assert output["success"] is True and output["error"] is None
    assert set(output) >= {"success", "audio_url", "duration_seconds", "sample_rate", "text_output",
                           "metadata", "error"}
    audio = base64.b64decode(output["audio_base64"])
    assert audio[:4] == b"RIFF" and output["audio_url"] is None
    meta = output["metadata"]
    assert meta["audio_delivery"] == "inline" and meta["request_id"] == "job-1"
    assert {"queue", "prefill", "decode", "total"} <= set(meta["timings"])
    assert meta["audio_bytes"] == len(audio)
    assert "higgs_tts_requests_total{outcome=\"success\"} 1.0" in metrics.render().decode()


def test_audio_that_cannot_fit_inline_is_refused_before_any_work():
    engine = FakeSpeechEngine()
    worker, _ = make_worker(engine=engine, inline_audio_limit=1000)
    output = run(worker, GOOD)["output"]
    error = output["error"]
    assert output["success"] is False and error["code"] == "PAYLOAD_TOO_LARGE" and error["type"] == "validation_error"
    assert error["details"]["field"] == "s3_bucket" and error["details"]["actual_max_bytes"] > 1000
    assert "s3_bucket" in error["message"]
    assert engine.requests == 0  # nothing was generated
    assert run(worker, {**GOOD, "s3_bucket": "out-bucket"})["output"]["success"] is True  # stored: no limit


@pytest.mark.parametrize("encoder,limit,fits", [("soundfile", 1000, []), ("soundfile", 60_000, ["mp3", "ogg"]),
                                                ("soundfile", 10**9, None), ("wav", 60_000, [])])
def test_the_refusal_names_the_compressed_formats_that_would_fit(encoder, limit, fits):
    """A WAV bound over the limit: the message offers the formats this worker encodes whose
    bound is under it."""
    from adapters.soundfile import SoundfileEncoder

    worker, _ = make_worker(engine=FakeSpeechEngine(), inline_audio_limit=limit,
                            encoder=SoundfileEncoder() if encoder == "soundfile" else WavEncoder())
    output = run(worker, {**GOOD, "max_new_tokens": 100})["output"]
    if fits is None:
        assert output["success"] is True
        return
    error = output["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE" and error["details"]["formats_that_fit"] == fits
    assert ("output_format mp3 or ogg fits" in error["message"]) == bool(fits)
    if fits:
        assert run(worker, {**GOOD, "max_new_tokens": 100, "output_format": "mp3"})["output"]["success"] is True


def test_audio_over_the_limit_after_generation_says_what_was_made():
    class Underestimating(FakeSpeechEngine):
        def max_frames(self, request):
            return 1

    worker, _ = make_worker(engine=Underestimating(), inline_audio_limit=5000)
    error = run(worker, GOOD)["output"]["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE" and error["type"] == "system_error"
    details = error["details"]
    assert details["inline_limit_bytes"] == 5000 and details["audio_bytes"] > 5000
    assert details["duration_seconds"] > 0 and details["stop_reason"] == "end_token"


def test_a_stored_result_gives_its_url_and_no_inline_audio():
    worker, _ = make_worker()
    output = run(worker, {**GOOD, "s3_bucket": "out-bucket", "s3_key": "x/y.wav"})["output"]
    assert output["success"] is True and "audio_base64" not in output
    assert output["audio_url"] and output["metadata"]["s3_key"] == "x/y.wav"
    assert output["metadata"]["audio_delivery"] == "url"


def test_an_unexpected_failure_is_an_internal_error_and_the_next_job_runs():
    class Broken:
        def __call__(self, *args, **kwargs):
            raise RuntimeError("boom")

    worker, _ = make_worker()
    worker._service.speak = Broken()  # shadows the method on this instance
    output = run(worker, GOOD)["output"]
    assert output["success"] is False and output["error"]["code"] == "INTERNAL_ERROR"
    del worker._service.speak
    assert run(worker, GOOD)["output"]["success"] is True


def test_engine_failure_is_an_inference_error():
    worker, _ = make_worker(engine=FakeSpeechEngine(fail=RuntimeError("cuda exploded")))
    output = run(worker, GOOD)["output"]
    assert output["error"]["type"] == "inference_error"


# -- streaming ------------------------------------------------------------------------------


def test_stream_yields_started_numbered_chunks_and_a_result():
    worker, _ = make_worker()
    items = [item["output"] for item in run_stream(worker, GOOD)]
    types = [i["type"] for i in items]
    assert types[0] == "started" and types[-1] == "result"
    assert {"audio", "progress"} <= set(types[1:-1])
    audio = [i for i in items if i["type"] == "audio"]
    assert [a["sequence"] for a in audio] == list(range(len(audio)))
    result = items[-1]
    assert result["success"] is True and result["metadata"]["audio_delivery"] == "stream"
    samples = sum(len(base64.b64decode(a["audio_base64"])) // 2 for a in audio)
    assert result["duration_seconds"] == pytest.approx(samples / 24000, abs=1e-3)


def test_stream_of_bad_input_is_one_result_saying_why():
    worker, _ = make_worker()
    items = run_stream(worker, {"transcript": "Hi.", "top_p": 0})
    assert len(items) == 1
    assert items[0]["output"]["success"] is False
    assert items[0]["output"]["error"]["code"] == "INVALID_TOP_P"
    assert "error" not in items[0]  # the SDK saw no error key: the job completes


def test_stream_stops_before_the_aggregate_passes_the_payload_cap():
    worker, _ = make_worker(engine=FakeSpeechEngine(step_delay=0.001), stream_output_limit=40_000)
    items = [i["output"] for i in run_stream(worker, {**GOOD, "transcript": "word " * 200})]
    result = items[-1]
    assert result["error"]["code"] == "PAYLOAD_TOO_LARGE"
    sent = sum(len(i["audio_base64"]) for i in items if i["type"] == "audio")
    assert sent <= 40_000


def test_leaving_a_stream_early_cancels_generation():
    engine = FakeSpeechEngine(step_delay=0.01)
    worker, metrics = make_worker(engine=engine)

    async def first_audio_then_leave():
        stream = worker.handle_stream({"id": "j", "input": {**GOOD, "transcript": "word " * 400}})
        async for item in stream:
            if item["type"] == "audio":
                break
        started = time.monotonic()
        await stream.aclose()
        return time.monotonic() - started

    assert asyncio.run(first_audio_then_leave()) < 5
    assert metrics.in_flight._value.get() == 0


# -- progress and tracing -----------------------------------------------------------------


def test_progress_is_reported_at_most_once_per_interval():
    calls = []
    worker, _ = make_worker(engine=FakeSpeechEngine(step_delay=0.002),
                            progress=lambda job, p: calls.append((job["id"], p)), progress_interval=0.0)
    run(worker, {**GOOD, "transcript": "word " * 60})
    assert len(calls) >= 2 and calls[-1][0] == "job-1"
    assert {"frames_done", "audio_seconds", "chunks_done", "chunks_total", "elapsed_seconds"} <= set(calls[-1][1])
    calls.clear()
    worker, _ = make_worker(progress=lambda job, p: calls.append(p), progress_interval=3600)
    run(worker, {**GOOD, "transcript": "word " * 60})
    assert calls == []


def test_a_failing_progress_reporter_does_not_fail_the_job():
    def broken(job, progress):
        raise ConnectionError("platform unreachable")

    worker, _ = make_worker(progress=broken, progress_interval=0.0)
    assert run(worker, GOOD)["output"]["success"] is True


def test_the_callers_traceparent_is_continued():
    exporter = InMemorySpanExporter()
    provider = make_tracer_provider(Settings(), exporter)
    worker, _ = make_worker(tracer=OtelTracer(provider))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    output = run(worker, {**GOOD, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})["output"]
    assert output["metadata"]["trace_id"] == trace_id
    spans = exporter.get_finished_spans()
    names = {s.name for s in spans}
    assert {"runpod.job", "speech.generate"} <= names
    assert {format(s.context.trace_id, "032x") for s in spans} == {trace_id}


def test_jobs_take_turns_on_the_engine():
    engine = FakeSpeechEngine(step_delay=0.003)
    worker, metrics = make_worker(engine=engine)
    depth = []

    async def two_at_once():
        async def watch():
            for _ in range(200):
                lines = metrics.render().decode().splitlines()
                depth.append(tuple(next(float(line.split()[1]) for line in lines if line.startswith(name + " "))
                                   for name in ("higgs_tts_queue_depth", "higgs_tts_in_flight",
                                                "higgs_tts_requests_waiting")))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        outputs = await asyncio.gather(worker.handle({"id": "a", "input": GOOD}),
                                       worker.handle({"id": "b", "input": GOOD}))
        watcher.cancel()
        return outputs

    outputs = asyncio.run(two_at_once())
    assert all(o["success"] for o in outputs)
    assert max(d[1] for d in depth) == 1  # never two generating
    assert (1, 1, 1.0) in depth  # one waited while the other generated, and the scaling metric said so
    assert worker.concurrency(4) == 1


# -- health server --------------------------------------------------------------------------


# -- concurrency ---------------------------------------------------------------------------------


def test_the_worker_takes_as_many_jobs_as_the_engine_decodes_together():
    engine = FakeSpeechEngine(step_delay=0.004, capacity=3)
    use_case = GenerateSpeech(engine, InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(),
                              AudioArchive(InMemoryObjectStore()))
    metrics = WorkerMetrics(engine_load=engine.load)
    worker = RunpodWorker(SpeechService(use_case, engine, InMemoryVoiceLibrary()), metrics)
    assert worker.concurrency(0) == 3

    async def five_jobs():
        jobs = [run_job(worker.handle, {"id": f"job-{i}", "input": {**GOOD, "transcript": "word " * 30}})
                for i in range(5)]
        return await asyncio.gather(*jobs)

    results = asyncio.run(five_jobs())
    assert all(r["output"]["success"] for r in results)
    assert engine.peak_active == 3  # three at once, never more
    text = metrics.render().decode()
    assert "higgs_tts_slots_capacity 3.0" in text and "higgs_tts_slots_busy 0.0" in text
    assert "higgs_tts_queue_wait_seconds_count 5.0" in text
    rate = float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("higgs_tts_audio_seconds_per_second ")))
    assert rate > 0


def test_an_engine_that_reports_no_slot_still_gets_one_job_at_a_time():
    engine = FakeSpeechEngine(capacity=0)
    use_case = GenerateSpeech(engine, InMemoryVoiceLibrary(), WavEncoder())
    worker = RunpodWorker(SpeechService(use_case, engine, InMemoryVoiceLibrary()), WorkerMetrics())
    assert worker.concurrency(0) == 1 and worker.concurrency(5) == 1
