"""A worker told to stop (SIGTERM, what RunPod and Kubernetes send on scale-down; SIGINT) with
a long stream in flight, on every face, each its own process: no new request is taken (HTTP
503 SHUTTING_DOWN and /ready 503 at once, gRPC UNAVAILABLE, RunPod takes no job), the one in
flight finishes within HIGGS_DRAIN_SECONDS or is stopped with SHUTTING_DOWN in its own format,
and the process exits 0 without a traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import grpc
import httpx
import pytest

from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.grpc_helpers import collect, domain_code, kinds, speech_request, wait_for
from tests.integration.runpod_helpers import ROOT, FakePlatform, free_port, guarded_env

pytestmark = pytest.mark.slow

# the service on a fake engine that takes `step_delay` seconds a frame: streams of known length
LAUNCHER = """
import sys
from dependency_injector import providers
from adapters.fake import FakeSpeechEngine
from app.cli import main
from app.container import build_container

container = build_container()
container.engine.override(providers.Object(FakeSpeechEngine(step_delay=float(sys.argv[1]))))
sys.exit(main(sys.argv[2:], container=container))
"""
TEXT = "word " * 60  # 536 frames on the fake: about 5 s at 10 ms a frame
STEP = "0.01"


class Worker:
    def __init__(self, tmp_path, args: list[str], drain: float, **env: str) -> None:
        self.log_path = tmp_path / "worker.log"
        self._log = open(self.log_path, "wb")
        environment = guarded_env(tmp_path, HIGGS_ENGINE="fake", HIGGS_STORE="none", HIGGS_DRAIN_SECONDS=str(drain),
                                  PYTHONPATH=str(ROOT), **env)
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, STEP, *args], cwd=tmp_path, env=environment,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def exited(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()


def clean_exit(worker: Worker) -> None:
    code = worker.exited()
    output = worker.output()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]


# -- HTTP ------------------------------------------------------------------------------------------


def http_worker(tmp_path, drain: float) -> tuple[Worker, str]:
    port = free_port()
    worker = Worker(tmp_path, ["serve", "http", "--host", "127.0.0.1", "--port", str(port)], drain)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _status(base + "/ready") == 200, timeout=60)
    return worker, base


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def stream_in_background(base: str, body: dict) -> tuple[dict, threading.Event, threading.Thread]:
    """A speech stream read on a thread: `result` gets status, bytes, and how it ended."""
    result: dict = {}
    started = threading.Event()

    def read() -> None:
        try:
            with httpx.stream("POST", base + "/v1/audio/speech", json=body, timeout=120) as response:
                result["status"] = response.status_code
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    started.set()
                result["data"] = bytes(data)
                result["ended"] = "complete"
        except httpx.RemoteProtocolError:
            result["ended"] = "cut off"
        finally:
            started.set()

    thread = threading.Thread(target=read)
    thread.start()
    return result, started, thread


def refused_while_draining(base: str) -> None:
    """Right after the signal: a new request is refused at once, and the worker says it is not ready."""
    def refused():
        response = httpx.post(base + "/v1/audio/speech", json={"input": "Hi."}, timeout=10)
        return response if response.status_code == 503 else None

    response = wait_for(refused, timeout=5)
    assert response.json()["error"]["code"] == "SHUTTING_DOWN"
    assert response.headers["retry-after"] == "1"  # another replica, at once
    assert httpx.get(base + "/ready", timeout=5).status_code == 503


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_http_lets_the_stream_in_flight_finish_then_exits_0(tmp_path, sig):
    worker, base = http_worker(tmp_path, drain=60)
    result, started, thread = stream_in_background(base, {"input": TEXT, "response_format": "pcm", "seed": 1})
    assert started.wait(30)
    worker.proc.send_signal(sig)
    refused_while_draining(base)
    thread.join(60)
    assert result["status"] == 200 and result["ended"] == "complete"
    assert len(result["data"]) == 536 * 960 * 2  # every frame of it, as 16-bit PCM
    clean_exit(worker)
    assert {"event": "drained", "stopped": 0} in worker.events()


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_http_stops_a_stream_past_the_drain_and_says_so_in_its_format(tmp_path, stream_format):
    worker, base = http_worker(tmp_path, drain=1)
    body = {"input": TEXT * 3, "response_format": "wav", "stream_format": stream_format, "seed": 1}
    result, started, thread = stream_in_background(base, body)
    assert started.wait(30)
    worker.proc.send_signal(signal.SIGTERM)
    thread.join(60)
    if stream_format == "audio":  # no terminating chunk: the client knows the file is not whole
        assert result["ended"] == "cut off"
    else:
        events = [json.loads(line[6:]) for line in result["data"].decode().splitlines() if line.startswith("data: ")]
        assert events[0]["type"] == "speech.audio.delta"
        assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "SHUTTING_DOWN"
    clean_exit(worker)
    assert {"event": "drained", "stopped": 1} in worker.events()


# -- gRPC ------------------------------------------------------------------------------------------


def grpc_worker(tmp_path, drain: float) -> tuple[Worker, str]:
    worker = Worker(tmp_path, ["serve", "grpc", "--host", "127.0.0.1", "--port", "0"], drain)
    listening = wait_for(lambda: next((e for e in worker.events() if e.get("event") == "listening"), None),
                         timeout=60)
    return worker, listening["address"]


def ready_stub(address: str) -> pb_grpc.SpeechServiceStub:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    wait_for(lambda: health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING,
             timeout=60)
    return pb_grpc.SpeechServiceStub(channel)


@pytest.mark.parametrize("drain,ends", [(60, "completed"), (1, "SHUTTING_DOWN")])
def test_grpc_drains_refuses_new_calls_and_exits_0(tmp_path, drain, ends):
    worker, address = grpc_worker(tmp_path, drain)
    stub = ready_stub(address)
    call = stub.StreamSpeech(speech_request(text=TEXT * (1 if drain > 1 else 3), voice=None), timeout=120)
    assert next(call).WhichOneof("event") == "started"
    worker.proc.send_signal(signal.SIGTERM)

    def refused():
        try:
            list(stub.StreamSpeech(speech_request(text="Hi.", voice=None), timeout=10))
        except grpc.RpcError as error:
            return error
        return None

    error = wait_for(refused, timeout=5)
    assert error.code() == grpc.StatusCode.UNAVAILABLE and domain_code(error) == "SHUTTING_DOWN"
    messages, error = collect(call)
    if ends == "completed":
        assert error is None and kinds(messages)[-1] == "completed"
    else:
        assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE and domain_code(error) == ends
    clean_exit(worker)


# -- RunPod (the production loop, against the platform's side on loopback) -----------------------


@pytest.mark.parametrize("drain,ends", [(60, "success"), (1, "SHUTTING_DOWN")])
def test_the_runpod_worker_drains_takes_no_new_job_and_exits_0(tmp_path, drain, ends):
    platform = FakePlatform([{"id": "job-long", "input": {"transcript": TEXT * (1 if drain > 1 else 3),
                                                            "seed": 3}}])
    worker = Worker(tmp_path, ["serve", "runpod"], drain, RUNPOD_PROGRESS_INTERVAL="0", **platform.env())
    try:
        wait_for(lambda: platform.progress("job-long"), timeout=60)  # running
        worker.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with platform.lock:
            platform.jobs.append({"id": "job-late", "input": {"transcript": "Hi."}})
            takes = len(platform.takes)
        result = wait_for(lambda: platform.finished("job-long"), timeout=60)[0]
        clean_exit(worker)
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
        platform.close()
    if ends == "success":
        assert result["output"]["success"] is True and result["output"]["metadata"]["frames"] == 536
    else:
        assert result["output"]["success"] is False and result["output"]["error"]["code"] == ends
    assert platform.jobs == [{"id": "job-late", "input": {"transcript": "Hi."}}]  # never taken
    assert len(platform.takes) <= takes + 1  # at most a poll already under way when the signal came
    assert any(e.get("event") == "draining" for e in worker.events())
