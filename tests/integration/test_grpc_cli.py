"""`higgs-tts stream` against a real server, and `higgs-tts serve grpc` as a process that
stops gracefully on SIGTERM."""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.grpc import SERVICE_NAME
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.grpc_helpers import collect, kinds, speech_request, stream_cli

ROOT = Path(__file__).resolve().parents[2]

def test_stream_reports_the_servers_error(server, tmp_path, capsys):
    code, summary = stream_cli(
        capsys, "--target", server.address, "--text", "Hello.", "--voice", "nobody",
        "--out", str(tmp_path / "x.wav"),
    )
    assert code == 2 and summary["success"] is False
    assert summary["error"]["code"] == "UNKNOWN_VOICE"
    assert summary["error"]["details"]["grpc_status"] == "NOT_FOUND"
    assert not (tmp_path / "x.wav").exists()


def test_stream_checks_its_input_before_calling(tmp_path, capsys):
    code, summary = stream_cli(
        capsys, "--target", "127.0.0.1:1", "--text", "Hello.", "--top-p", "0", "--out", str(tmp_path / "x.wav")
    )
    assert code == 2 and summary["error"]["code"] == "INVALID_TOP_P"


def test_stream_to_a_server_that_is_not_there(tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, summary = stream_cli(
        capsys, "--target", f"127.0.0.1:{port}", "--text", "Hello.", "--timeout", "5",
        "--out", str(tmp_path / "x.wav"),
    )
    assert code == 1
    assert summary["error"]["details"]["grpc_status"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


SERVER_PROCESS = """
import sys
from dependency_injector import providers
from adapters.fake import FakeSpeechEngine
from app.cli import main
from app.container import build_container

container = build_container()
container.engine.override(providers.Object(FakeSpeechEngine(step_delay=float(sys.argv[1]))))
sys.exit(main(["serve", "grpc", "--host", "127.0.0.1", "--port", "0", "--grace", sys.argv[2]],
              container=container))
"""


def test_serve_grpc_finishes_in_flight_calls_on_sigterm(tmp_path):
    env = {**os.environ, "HIGGS_ENGINE": "fake", "HIGGS_STORE": "none", "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "stderr.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_PROCESS, "0.005", "30"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=tmp_path,
        )
    lines: queue.Queue = queue.Queue()

    def read_stdout():
        for line in proc.stdout:
            lines.put(line)
        lines.put("")  # the process has closed its stdout

    def next_line():
        line = lines.get(timeout=30)
        assert line, "the server exited: " + (tmp_path / "stderr.log").read_text()[-2000:]
        return json.loads(line)

    threading.Thread(target=read_stdout, daemon=True).start()
    try:
        listening = next_line()
        assert listening["event"] == "listening" and listening["service"] == SERVICE_NAME
        with grpc.insecure_channel(listening["address"]) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=30
            )
            assert any(r.status == health_pb2.HealthCheckResponse.SERVING for r in watch)

            call = pb_grpc.SpeechServiceStub(channel).StreamSpeech(
                speech_request(text="word " * 30), timeout=30  # about 270 frames: 1.4 s
            )
            assert next(call).WhichOneof("event") == "started"
            proc.send_signal(signal.SIGTERM)
            messages, error = collect(call)
        assert error is None and kinds(messages)[-1] == "completed"
        assert proc.wait(timeout=30) == 0
        assert next_line() == {"event": "stopped", "clean": True}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("delay", [0.2, 0.5, 0.8, 1.1, 1.4, 1.8, 2.3, 3.0])
def test_sigint_while_the_model_loads_stops_cleanly(tmp_path, demo_bundle, delay):
    """SIGINT at any point of the model load (the real loader on the demo bundle): the server
    says it stopped and exits with a status, never an abort from native threads torn down under
    a load ('terminate called without an active exception', -6)."""
    env = {**os.environ, "MODEL_PATH": str(demo_bundle.root), "HIGGS_STORE": "none", "HIGGS_DEVICE": "cpu",
           "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "none"}
    with open(tmp_path / "stderr.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())",
             "serve", "grpc", "--host", "127.0.0.1", "--port", "0", "--grace", "1"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=tmp_path,
        )
    try:
        assert json.loads(proc.stdout.readline())["event"] == "listening"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        stderr = (tmp_path / "stderr.log").read_text()
        assert proc.returncode in (0, 1), (proc.returncode, stderr[-2000:])
        assert json.loads(out.strip().splitlines()[-1])["event"] == "stopped"
        assert "terminate called" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_grpc_serves_probes_and_the_scaling_metrics_on_health_port(tmp_path):
    """The gRPC face has the same /health, /ready and /metrics as the others (HEALTH_PORT), and
    its calls are counted there."""
    import urllib.request

    from adapters.runpod.metrics import SCALING_METRICS
    from tests.integration.runpod_helpers import free_port

    port = free_port()
    env = {**os.environ, "HIGGS_ENGINE": "fake", "HIGGS_STORE": "none", "PYTHONPATH": str(ROOT),
           "HEALTH_PORT": str(port), "HEALTH_HOST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER_PROCESS, "0.001", "5"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    try:
        listening = json.loads(proc.stdout.readline())
        assert listening["health"] == port

        def get(path):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()

        deadline = time.monotonic() + 30
        while True:
            try:
                if get("/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        with grpc.insecure_channel(listening["address"]) as channel:
            stub = pb_grpc.SpeechServiceStub(channel)
            assert stub.Synthesize(speech_request(omit_audio=True), timeout=30).completed.frames > 0
            with pytest.raises(grpc.RpcError):
                stub.Synthesize(speech_request(voice="nobody", omit_audio=True), timeout=30)
        status, text = get("/metrics")
        assert status == 200 and get("/health")[0] == 200
        assert all(f"\n{name} " in text for name in SCALING_METRICS), text
        assert 'higgs_tts_requests_total{outcome="success"} 1.0' in text
        assert 'higgs_tts_errors_total{code="UNKNOWN_VOICE",type="validation_error"} 1.0' in text
        assert "higgs_tts_slots_capacity 1.0" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
