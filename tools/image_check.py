"""`tools/image.py check` (make image-check): the built image run as RunPod runs it.

The checks themselves (`wait_ready`, `check_runsync`, `check_stream`, `check_drain`) take a
worker's addresses and a way to signal it, so the tests run them against `higgs-tts serve
runpod` outside the image (tests/integration/test_image_tool.py) and this script runs them
against the image."""

from __future__ import annotations

import base64
import io
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
LIMIT_GB = 5.0
JOB = {"transcript": "The image speaks.", "seed": 3, "max_new_tokens": 120}
LONG_JOB = {"transcript": "word " * 60, "seed": 3}  # seconds of decoding on the demo model: in flight at SIGTERM


def log(message: str) -> None:
    print(f"[image-check] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, timeout: float = 120.0) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


# -- the checks ------------------------------------------------------------------------------------


def wait_ready(health: str, alive: Callable[[], bool], timeout: float = 300.0) -> float:
    """Seconds until /ready says 200 (the model loaded and warmed)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert alive(), "the worker exited before it was ready"
        try:
            if http("GET", f"{health}/ready", timeout=5)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready after {timeout:.0f} s")


def wait_listening(base: str, alive: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert alive(), "the worker exited"
        try:
            http("GET", f"{base}/openapi.json", timeout=5)
            return
        except OSError:
            assert time.monotonic() < deadline, f"{base} is not listening"
            time.sleep(0.2)


def wav_samples(data: bytes) -> int:
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 24000, rate
    return len(samples)


def check_runsync(api: str) -> int:
    """A job through /runsync comes back with audio: how many samples."""
    status, body = http("POST", f"{api}/runsync", {"input": JOB})
    assert status == 200 and isinstance(body, dict) and body.get("status") == "COMPLETED", (status, str(body)[:500])
    output = body["output"]
    assert output["success"] is True, output
    samples = wav_samples(base64.b64decode(output["audio_base64"]))
    assert samples > 0
    return samples


def check_stream(api: str, timeout: float = 120.0) -> int:
    """A job through /run, its chunks polled from /stream as they come: audio, in order, then
    the result; how many samples."""
    status, body = http("POST", f"{api}/run", {"input": JOB})
    assert status == 200 and isinstance(body, dict), (status, body)
    job = body["id"]
    items: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        status, body = http("POST", f"{api}/stream/{job}")  # the local API runs the job at this call
        assert status == 200 and isinstance(body, dict), (status, body)
        items += [entry["output"] for entry in body.get("stream", [])]
        if body.get("status") in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        assert time.monotonic() < deadline, "the stream did not finish"
        time.sleep(0.2)
    assert body["status"] == "COMPLETED", body
    chunks = [item for item in items if item.get("type") == "audio"]
    assert [c["sequence"] for c in chunks] == list(range(len(chunks))) and chunks, [i.get("type") for i in items]
    assert items[-1].get("type") == "result" and items[-1]["success"] is True, items[-1]
    return sum(len(base64.b64decode(c["audio_base64"])) // 2 for c in chunks)


def check_drain(platform, start: Callable[[dict[str, str]], object], terminate: Callable[[object], None],
                wait: Callable[[object], int], timeout: float = 120.0) -> dict:
    """The worker in RunPod's production loop: a long job in flight at SIGTERM finishes, no job
    is taken after it, the process exits 0."""
    process = start(platform.env())
    deadline = time.monotonic() + timeout
    while not platform.progress("drain-job"):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    terminate(process)
    time.sleep(1.0)  # a poll already under way when the signal came may still hand out a job
    with platform.lock:
        platform.jobs.append({"id": "after-sigterm", "input": JOB})
    code = wait(process)
    results = platform.finished("drain-job")
    assert code == 0, f"exit status {code}"
    assert results and results[0]["output"]["success"] is True, results
    assert platform.jobs and platform.jobs[0]["id"] == "after-sigterm", "a job was taken after SIGTERM"
    return {"exit_status": code, "frames": results[0]["output"]["metadata"]["frames"]}


# -- the image ------------------------------------------------------------------------------------


class BuildahImage:
    """The image run with `buildah run --isolation chroot` (shares the host's network: every
    port here is on 127.0.0.1). buildah does not forward signals: they go to the worker itself."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        inspect = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", tag], check=True,
                                            capture_output=True).stdout)
        self.config = inspect["Docker"]["config"]
        self.manifest = json.loads(inspect["Manifest"])
        self.history = [h for h in inspect["Docker"]["history"] if not h.get("empty_layer")]
        self.container = subprocess.run(["buildah", "from", "--pull=never", tag], check=True,
                                        capture_output=True, text=True).stdout.strip()

    def argv(self, command: list[str], env: dict[str, str], mounts: dict[str, str]) -> list[str]:
        out = ["buildah", "run", "--isolation", "chroot"]
        for key, value in env.items():
            out += ["--env", f"{key}={value}"]
        for host, inside in mounts.items():
            out += ["--volume", f"{host}:{inside}:ro"]
        return [*out, self.container, "--", *command]

    def start(self, command: list[str], env: dict[str, str], mounts: dict[str, str], log_path: Path):
        return subprocess.Popen(self.argv(command, env, mounts), stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)

    def run(self, command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(command, env or {}, {}), capture_output=True, text=True, timeout=600)

    @staticmethod
    def signal(process, sig: int) -> None:
        import psutil

        inner = [p for p in psutil.Process(process.pid).children(recursive=True) if not p.name().startswith("memfd:")]
        (inner[-1] if inner else psutil.Process(process.pid)).send_signal(sig)

    def sizes(self) -> tuple[int, list[tuple[int, str]]]:
        layers = [(layer["size"], history.get("created_by", "")) for layer, history in
                  zip(self.manifest["layers"], self.history)]
        return sum(size for size, _ in layers), layers

    def close(self) -> None:
        subprocess.run(["buildah", "rm", self.container], capture_output=True)


PACKAGE_SIZES = """
import json, sys
from collections import defaultdict
from pathlib import Path
site = Path(sys.argv[1])
owned = {}
for record in site.glob("*.dist-info/RECORD"):
    name = record.parent.name.split("-")[0]
    for line in record.read_text().splitlines():
        path = line.rsplit(",", 2)[0]
        if path:
            owned[(site / path).resolve()] = name
sizes = defaultdict(int)
for path in site.rglob("*"):
    if path.is_file() and not path.is_symlink():
        sizes[owned.get(path.resolve(), "(unrecorded)")] += path.stat().st_size
print(json.dumps(sorted(sizes.items(), key=lambda kv: -kv[1])[:10]))
"""


def image_env(image: BuildahImage, **extra: str) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in image.config.get("Env") or [])
    env.update(HEALTH_HOST="127.0.0.1", RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true", HIGGS_DEVICE="cpu",
               HIGGS_STORE="none", OTEL_TRACES_EXPORTER="none")
    env.update(extra)
    return env


def local_api(image: BuildahImage, demo: Path, workdir: Path, **env: str) -> tuple[object, str, str, float]:
    """The image's CMD with runpod's local API on 127.0.0.1; (process, api, health, seconds to ready)."""
    api_port, health_port = free_port(), free_port()
    command = [*image.config["Cmd"], "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(api_port)]
    environment = image_env(image, HEALTH_PORT=str(health_port), **env)
    started = time.monotonic()
    process = image.start(command, environment, {str(demo): environment["MODEL_PATH"]}, workdir / "worker.log")
    health = f"http://127.0.0.1:{health_port}"
    wait_ready(health, lambda: process.poll() is None)
    seconds = time.monotonic() - started
    api = f"http://127.0.0.1:{api_port}"
    wait_listening(api, lambda: process.poll() is None)  # the SDK opens its API once the model is warm
    return process, api, health, seconds


def stop(image: BuildahImage, process) -> int:
    image.signal(process, signal.SIGTERM)
    return process.wait(60)


def cmd_check(args) -> int:
    from tools.runpod_platform import FakePlatform

    image = BuildahImage(args.tag)
    workdir = Path(tempfile.mkdtemp(prefix="higgs-image-check-"))
    try:
        demo = workdir / "demo"
        subprocess.run([sys.executable, "-m", "app.cli", "demo-model", str(demo)], check=True, cwd=ROOT,
                       capture_output=True)
        report: dict = {}
        process, api, health, seconds = local_api(image, demo, workdir)
        report["cold_start_to_ready_s"] = round(seconds, 2)
        test = image.config.get("Healthcheck", {}).get("Test") or []
        healthcheck = image.run(["sh", "-c", test[1]] if test[:1] == ["CMD-SHELL"] else test[1:],
                                {"HEALTH_PORT": health.rsplit(":", 1)[1]})
        assert healthcheck.returncode == 0, healthcheck.stderr
        report["healthcheck"] = "passed"
        report["runsync_samples"] = check_runsync(api)
        stop(image, process)  # runpod's local test API (its own uvicorn) is only stopped; the drain is checked below
        process, api, _, _ = local_api(image, demo, workdir, RUNPOD_STREAM="true")
        report["stream_samples"] = check_stream(api)
        stop(image, process)
        platform = FakePlatform([{"id": "drain-job", "input": LONG_JOB}])
        environment = image_env(image, HEALTH_PORT=str(free_port()), RUNPOD_PROGRESS_INTERVAL="0")
        report["drain"] = check_drain(
            platform,
            lambda env: image.start(image.config["Cmd"], {**environment, **env}, {str(demo): environment["MODEL_PATH"]},
                                    workdir / "worker.log"),
            lambda p: image.signal(p, signal.SIGTERM), lambda p: p.wait(120))
        platform.close()
        report.update(startup_split(workdir / "worker.log"))
        total, layers = image.sizes()
        packages = json.loads(image.run(["python", "-c", PACKAGE_SIZES, site_packages(image)]).stdout)
    finally:
        image.close()
    print(json.dumps(report))
    print("layers:")
    for size, created_by in layers:
        print(f"  {size / 1e9:6.3f} GB  {created_by[:110]}")
    print("largest packages:")
    for name, size in packages:
        print(f"  {size / 1e9:6.3f} GB  {name}")
    print(f"image size: {total / 1e9:.2f} GB")
    return 0 if total / 1e9 <= LIMIT_GB else 1


def site_packages(image: BuildahImage) -> str:
    found = image.run(["python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    return found.stdout.strip()


def startup_split(log_path: Path) -> dict:
    """The worker's own account of its start (imports, load, warm-up), from its event lines."""
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith('{"event": "warm"'):
            event = json.loads(line)
            return {"worker_start": event.get("startup", {})}
    return {}


def add_check_command(commands, tag: str) -> None:
    """`check`, a command of tools/image.py, which names the image's default `tag`."""
    check = commands.add_parser("check", help="run the image as RunPod would and measure it (make image-check)")
    check.add_argument("--tag", default=tag)
    check.set_defaults(handler=cmd_check)
