"""`higgs-tts serve runpod` as its own process on the demo bundle, driven through runpod's real
local API server (--rp_serve_api on 127.0.0.1) and through its production job loop against a
loopback stand-in for the platform. Every worker runs with outbound connections restricted to
loopback; each test ends by asserting the worker never tried to leave it."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.runpod_helpers import (
    NETGUARD,
    FakePlatform,
    WorkerProcess,
    free_port,
    guarded_env,
    http,
    stream_samples,
    wav_samples,
)

pytestmark = pytest.mark.slow

VOICE_JOB = {
    "transcript": "The weather is lovely today.",
    "ref_audio": "belinda",
    "scene_prompt": "A quiet studio.",
    "seed": 7,
    "max_new_tokens": 48,
}


@pytest.fixture(scope="module")
def sync_worker(demo_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runpod-sync")
    env = guarded_env(tmp, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="local",
                      OUTPUT_DIR=str(tmp / "out"), HEALTH_PORT=str(free_port()),
                      PORT_HEALTH=str(free_port()))
    worker = WorkerProcess(tmp, env).wait_api()
    worker.ping_port = int(env["PORT_HEALTH"])
    yield worker
    worker.stop()
    assert worker.violations() == "", worker.violations()


@pytest.fixture(scope="module")
def stream_worker(demo_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runpod-stream")
    env = guarded_env(tmp, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none", RUNPOD_STREAM="true")
    worker = WorkerProcess(tmp, env).wait_api()
    yield worker
    worker.stop()
    assert worker.violations() == "", worker.violations()


def test_runsync_stores_the_audio_and_answers_a_fetchable_url(sync_worker):
    body = sync_worker.runsync({**VOICE_JOB, "s3_bucket": "tts-out", "s3_key": "runpod/a.wav"})
    assert body["status"] == "COMPLETED", body
    output = body["output"]
    assert output["success"] is True and output["error"] is None
    assert output["audio_url"].startswith("file://")
    with urllib.request.urlopen(output["audio_url"]) as response:
        samples, rate = wav_samples(response.read())
    assert rate == 24000 == output["sample_rate"]
    assert len(samples) / rate == pytest.approx(output["duration_seconds"], abs=1e-3)
    meta = output["metadata"]
    assert meta["s3_key"] == "runpod/a.wav" and meta["audio_delivery"] == "url"
    assert meta["model"]["layout"] == "transformers" and meta["model"]["demo"] is True
    assert len(meta["trace_id"]) == 32 and meta["timings"]["decode"] > 0
    record = Path(output["audio_url"][len("file://"):] + ".json")
    assert json.loads(record.read_text())["request_id"] == meta["request_id"] == body["id"]


def test_runsync_without_a_target_returns_the_audio_inline(sync_worker):
    output = sync_worker.runsync(VOICE_JOB)["output"]
    assert output["success"] is True and output["audio_url"] is None
    assert output["metadata"]["audio_delivery"] == "inline"
    samples, rate = wav_samples(__import__("base64").b64decode(output["audio_base64"]))
    assert rate == 24000 and len(samples) > 0


@pytest.mark.parametrize("bad, code", [
    ({"transcript": ""}, "INVALID_TRANSCRIPT"),
    ({"transcript": "a" * 10001}, "INVALID_TRANSCRIPT"),
    ({"transcript": "Hello.", "ref_audio": "nobody_here"}, "UNKNOWN_VOICE"),
    ({"transcript": "Hello.", "s3_bucket": "tts-out", "s3_key": "../escape.wav"}, "INVALID_S3_KEY"),
    ({"transcript": "Hello.", "top_p": 0}, "INVALID_TOP_P"),
    ({"transcript": "Hello.", "speaker": "belinda"}, "UNKNOWN_FIELD"),
])
def test_bad_input_answers_its_code_and_the_next_job_succeeds(sync_worker, bad, code):
    body = sync_worker.runsync(bad)
    assert body["status"] == "COMPLETED", body
    output = body["output"]
    assert output["success"] is False
    assert output["error"]["code"] == code
    assert output["error"]["type"] == "validation_error"
    assert set(output["error"]) == {"type", "message", "code", "details"}
    after = sync_worker.runsync({**VOICE_JOB, "max_new_tokens": 16})
    assert after["output"]["success"] is True


def test_streaming_audio_equals_the_non_streaming_audio(sync_worker, stream_worker):
    whole = sync_worker.runsync(VOICE_JOB)["output"]
    expected, _ = wav_samples(__import__("base64").b64decode(whole["audio_base64"]))
    body = stream_worker.runsync(VOICE_JOB)
    assert body["status"] == "COMPLETED"
    items = body["output"]  # return_aggregate_stream: every yielded item, in order
    assert items[0]["type"] == "started" and items[0]["encoding"] == "pcm_s16le"
    assert items[-1]["type"] == "result" and items[-1]["success"] is True
    assert items[-1]["metadata"]["audio_delivery"] == "stream"
    assert sum(1 for i in items if i["type"] == "audio") >= 2
    streamed = stream_samples(items)
    assert streamed.shape == expected.shape
    assert (streamed == expected).all()


def test_run_then_stream_endpoint_and_a_bad_streamed_job(stream_worker):
    status, queued = http("POST", f"{stream_worker.api}/run", {"input": {**VOICE_JOB, "max_new_tokens": 30}})
    assert status == 200 and queued["status"] == "IN_PROGRESS"
    status, streamed = http("POST", f"{stream_worker.api}/stream/{queued['id']}", timeout=300)
    assert status == 200 and streamed["status"] == "COMPLETED"
    outputs = [s["output"] for s in streamed["stream"]]
    assert outputs[-1]["type"] == "result" and outputs[-1]["success"] is True
    assert len(stream_samples(outputs)) > 0

    bad = stream_worker.runsync({"transcript": "Hello.", "temperature": 5})
    assert bad["status"] == "COMPLETED"
    assert bad["output"] == [{"type": "result", "success": False, "error": bad["output"][0]["error"]}]
    assert bad["output"][0]["error"]["code"] == "INVALID_TEMPERATURE"


def test_health_ready_metrics_and_ping(sync_worker):
    sync_worker.runsync({"transcript": "Hi.", "top_k": 0})
    sync_worker.runsync({**VOICE_JOB, "max_new_tokens": 16})
    assert http("GET", f"{sync_worker.health}/health") == (200, {"status": "ok"})
    status, ready = http("GET", f"{sync_worker.health}/ready")
    assert status == 200 and ready["ready"] is True and ready["model"]["loaded"] is True
    status, text = http("GET", f"{sync_worker.health}/metrics")
    assert status == 200
    assert 'higgs_tts_errors_total{code="INVALID_TOP_K",type="validation_error"}' in text
    success = [line for line in text.splitlines() if line.startswith('higgs_tts_requests_total{outcome="success"}')]
    assert success and float(success[0].split()[-1]) >= 1
    assert "higgs_tts_real_time_factor_count" in text and "higgs_tts_queue_depth 0.0" in text
    assert http("GET", f"http://127.0.0.1:{sync_worker.ping_port}/ping") == (200, {"status": "healthy"})


def test_a_worker_without_weights_answers_model_errors(tmp_path):
    env = guarded_env(tmp_path, MODEL_PATH=str(tmp_path / "missing"), HIGGS_STORE="none",
                      HEALTH_PORT=str(free_port()))
    worker = WorkerProcess(tmp_path, env).wait_api()
    try:
        status, ready = http("GET", f"{worker.health}/ready")
        assert status == 503 and ready["ready"] is False
        output = worker.runsync({"transcript": "Hello."})["output"]
        assert output["success"] is False
        assert output["error"]["type"] == "model_error" and output["error"]["code"] == "MODEL_NOT_FOUND"
        assert str(tmp_path) not in json.dumps(output)  # the caller never sees the worker's filesystem
        assert "warm_failed" in worker.output() and str(tmp_path / "missing") in worker.output()
    finally:
        worker.stop()
    assert worker.violations() == ""


def wait_for_results(platform, worker, *job_ids, timeout=240.0):
    deadline = time.monotonic() + timeout
    while not all(platform.finished(job_id) for job_id in job_ids):
        assert worker.proc.poll() is None, worker.output()
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.3)


def test_production_loop_takes_jobs_and_reports_progress(demo_bundle, tmp_path):
    """runpod's real job loop (no --api): fitness checks, job-take, progress, job-done."""
    platform = FakePlatform([
        {"id": "job-ok", "input": {**VOICE_JOB, "max_new_tokens": 60}},
        {"id": "job-bad", "input": {"transcript": "Hello.", "ref_audio": "nobody_here"}},
    ])
    env = guarded_env(tmp_path, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none",
                      RUNPOD_PROGRESS_INTERVAL="0", **platform.env())
    worker = WorkerProcess(tmp_path, env, api=False)
    try:
        wait_for_results(platform, worker, "job-ok", "job-bad")
        ok = platform.finished("job-ok")[0]
        assert ok["output"]["success"] is True and "error" not in ok
        assert ok["output"]["metadata"]["audio_delivery"] == "inline"
        bad = platform.finished("job-bad")[0]
        assert bad["output"]["success"] is False and bad["output"]["error"]["code"] == "UNKNOWN_VOICE"
        progress = platform.progress("job-ok")
        assert progress and progress[-1]["output"]["frames_done"] > 0
        # concurrency follows the engine's batch (8 by default): the SDK takes jobs in batches
        assert any(path.startswith("/job-take-batch/") and "batch_size=8" in path for path in platform.takes)
    finally:
        worker.stop()
        platform.close()
    assert worker.violations() == "", worker.violations()


def test_the_network_guard_refuses_and_records_outbound_connections(tmp_path):
    """The guard the workers above run under is live: without this the empty logs prove nothing."""
    env = guarded_env(tmp_path)
    code = ("import socket\n"
            "for target in [('8.8.8.8', 53), ('example.com', 443)]:\n"
            "    try:\n"
            "        socket.create_connection(target, timeout=1)\n"
            "    except PermissionError:\n"
            "        pass\n"
            "    else:\n"
            "        raise SystemExit('connected to ' + str(target))\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    log = Path(env["NETGUARD_LOG"]).read_text()
    assert "8.8.8.8" in log and "example.com" in log
    assert str(NETGUARD) in env["PYTHONPATH"]


def test_production_loop_streams_chunks_and_returns_the_aggregate(demo_bundle, tmp_path):
    """The streaming worker under runpod's real job loop: every item is posted to the stream
    URL as it is made, the job's result is all of them (return_aggregate_stream), and a failed
    job still completes with its error in the last item (the SDK would otherwise turn an
    "error" key into a FAILED job with a stringified dict)."""
    platform = FakePlatform([
        {"id": "job-stream", "input": {**VOICE_JOB, "max_new_tokens": 40}},
        {"id": "job-bad", "input": {"transcript": "Hello.", "top_p": 0}},
    ])
    env = guarded_env(tmp_path, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none",
                      RUNPOD_STREAM="true", **platform.env())
    worker = WorkerProcess(tmp_path, env, api=False)
    try:
        wait_for_results(platform, worker, "job-stream", "job-bad")
        result = platform.finished("job-stream")[0]
        assert "error" not in result
        items = result["output"]
        assert items[0]["type"] == "started" and items[-1]["type"] == "result"
        assert items[-1]["success"] is True and len(stream_samples(items)) > 0
        with platform.lock:
            posted = [d["body"]["output"] for d in platform.streamed if "id=job-stream&" in d["path"]]
        assert posted == items  # each item went out on its own first
        bad = platform.finished("job-bad")[0]
        assert "error" not in bad
        assert bad["output"][-1]["success"] is False
        assert bad["output"][-1]["error"]["code"] == "INVALID_TOP_P"
    finally:
        worker.stop()
        platform.close()
    assert worker.violations() == "", worker.violations()


def test_the_runpod_sdks_own_flags_are_accepted(tmp_path):
    """`--rp_serve_api --rp_api_host --rp_api_port --rp_log_level`, as runpod documents them."""
    env = guarded_env(tmp_path, HIGGS_ENGINE="fake", HIGGS_STORE="none")
    port = free_port()
    worker = WorkerProcess(tmp_path, env, ("--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port",
                                           str(port), "--rp_log_level", "WARN"), api=False)
    worker.api_port = port
    try:
        worker.wait_api()
        output = worker.runsync({"transcript": "Flags as runpod spells them.", "seed": 1})["output"]
        assert output["success"] is True and output["audio_base64"]
    finally:
        worker.stop()
    assert worker.violations() == ""


def test_runpod_test_input_flag_runs_one_job(tmp_path):
    env = guarded_env(tmp_path, HIGGS_ENGINE="fake", HIGGS_STORE="none")
    job = json.dumps({"input": {"transcript": "One local job.", "seed": 2}})
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())", "serve", "runpod",
         "--test_input", job], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stdout + result.stderr
    assert "Job local_test completed successfully" in log and "{'output': {'success': True" in log
    refused = subprocess.run(
        [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())", "serve", "runpod",
         "--rp_api_concurrency", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "rp_api_concurrency" in refused.stderr
