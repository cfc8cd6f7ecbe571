"""The same request through the two serving paths, gRPC (`serve grpc`) and RunPod
(`serve runpod` behind runpod's local API), each server its own process on the demo bundle (or
MODEL_PATH), on loopback: the first request after the server is ready and the next ones, with
the machine idle and with every core busy in other processes (`--hog`).

    .venv/bin/python bench/paths.py [--repeats 5] [--frames 150] [--hog]

Prints a table of seconds per request (min / median / max) and the ratio of the two paths."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = "The quick brown fox jumps over the lazy dog while the band plays on."


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(model_path: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MODEL_PATH=model_path, HIGGS_STORE="none", RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
               OTEL_TRACES_EXPORTER="none", LOG_LEVEL="WARNING", RUNPOD_LOG_LEVEL="ERROR",
               PYTHONPATH=str(ROOT))
    return env


CLI = [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())"]


def start_grpc(env, log):
    proc = subprocess.Popen(CLI + ["serve", "grpc", "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=log, text=True)
    line = proc.stdout.readline()
    address = json.loads(line)["address"]
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    while health.Check(health_pb2.HealthCheckRequest(service="")).status != health_pb2.HealthCheckResponse.SERVING:
        time.sleep(0.05)
    return proc, address


def start_runpod(env, log):
    port = free_port()
    proc = subprocess.Popen(CLI + ["serve", "runpod", "--rp_serve_api", "--rp_api_host", "127.0.0.1",
                                   "--rp_api_port", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(f"{url}/openapi.json", timeout=1):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("runpod worker exited")
            time.sleep(0.05)


def grpc_request(address: str, frames: int, seed: int) -> float:
    from adapters.grpc import SpeechClient
    from adapters.grpc.messages import message_from_request
    from core.domain.request import Sampling, SpeechRequest

    request = SpeechRequest(TEXT, sampling=Sampling(seed=seed, max_new_tokens=frames + 9))
    with SpeechClient(address) as client:
        started = time.perf_counter()
        result = client.stub.Synthesize(message_from_request(request), timeout=600)
        elapsed = time.perf_counter() - started
    assert result.completed.frames == frames, result.completed.frames
    return elapsed


def runpod_request(url: str, frames: int, seed: int) -> float:
    body = json.dumps({"input": {"transcript": TEXT, "seed": seed, "max_new_tokens": frames + 9}}).encode()
    request = urllib.request.Request(f"{url}/runsync", data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        output = json.loads(response.read())["output"]
    elapsed = time.perf_counter() - started
    assert output["success"] and output["metadata"]["frames"] == frames, output
    return elapsed


def hog(stop) -> None:
    while not stop.is_set():
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--hog", action="store_true", help="keep every core busy in other processes")
    args = parser.parse_args()

    model_path = os.environ.get("MODEL_PATH")
    if not model_path:
        from boson_multimodal.demo import write_demo_bundle

        model_path = str(write_demo_bundle(tempfile.mkdtemp(prefix="bench-paths-")).root)
    env = env_for(model_path)
    log = open(Path(tempfile.gettempdir()) / "bench-paths.log", "ab")
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=hog, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 1)]
    results: dict[str, dict[str, list[float]]] = {}
    try:
        if args.hog:
            for p in hogs:
                p.start()
        for name, start, call in (("grpc", start_grpc, grpc_request), ("runpod", start_runpod, runpod_request)):
            proc, target = start(env, log)
            try:
                first = call(target, args.frames, 0)
                rest = [call(target, args.frames, i + 1) for i in range(args.repeats)]
            finally:
                proc.terminate()
                proc.wait(30)
            results[name] = {"first": [first], "next": rest}
    finally:
        stop.set()
        for p in hogs:
            if p.is_alive():
                p.join(5)
    print(f"# {args.frames} frames per request, {os.cpu_count()} cores, "
          f"{'every core busy in other processes' if args.hog else 'idle machine'}")
    print("path | first s | next min s | next median s | next max s")
    for name, r in results.items():
        n = r["next"]
        print(f"{name} | {r['first'][0]:.3f} | {min(n):.3f} | {statistics.median(n):.3f} | {max(n):.3f}")
    ratio = statistics.median(results["grpc"]["next"]) / statistics.median(results["runpod"]["next"])
    print(f"# grpc / runpod median: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
