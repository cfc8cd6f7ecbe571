"""Run `higgs-tts serve runpod` as its own process, the way the image does, with outbound
connections restricted to loopback (tests/netguard) and every violation written to a file."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import soundfile

from tools.runpod_platform import FakePlatform  # noqa: F401  (the tests' name for it)

ROOT = Path(__file__).resolve().parents[2]
NETGUARD = ROOT / "tests" / "netguard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def guarded_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "AWS_", "S3_", "OTEL_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(NETGUARD), str(ROOT)]),
        NETGUARD_LOG=str(tmp / "netguard.log"),
        RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
        HIGGS_DEVICE="cpu",
        HEALTH_HOST="127.0.0.1",
        OTEL_TRACES_EXPORTER="none",
    )
    env.update(extra)
    return env


def http(method: str, url: str, body: dict | None = None, timeout: float = 120.0):
    """(status, parsed JSON or text)"""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, kind = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        status, raw, kind = error.code, error.read(), error.headers.get_content_type()
    if kind == "application/json" and raw:
        return status, json.loads(raw)
    return status, raw.decode("utf-8", "replace")


class WorkerProcess:
    """`higgs-tts serve runpod --api` on a free loopback port; stdout/stderr kept for failures."""

    def __init__(self, tmp: Path, env: dict[str, str], args: tuple[str, ...] = (), api: bool = True) -> None:
        self.tmp = tmp
        self.api_port = free_port()
        self.health_port = int(env.get("HEALTH_PORT") or 0) or None
        self.env = env
        cli = [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())",
               "serve", "runpod", *args]
        if api:
            cli += ["--api", "--api-host", "127.0.0.1", "--api-port", str(self.api_port)]
        self.log_path = tmp / f"worker-{self.api_port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cli, cwd=tmp, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def health(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def wait_api(self, timeout: float = 180.0) -> "WorkerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.api}/openapi.json", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"worker API did not come up:\n{self.output()}")

    def runsync(self, job_input: dict, timeout: float = 300.0):
        status, body = http("POST", f"{self.api}/runsync", {"input": job_input}, timeout)
        assert status == 200, (status, body)
        return body

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def violations(self) -> str:
        path = Path(self.env["NETGUARD_LOG"])
        return path.read_text() if path.exists() else ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    return samples, rate


def stream_samples(items: list[dict]) -> np.ndarray:
    chunks = [item for item in items if item.get("type") == "audio"]
    assert [c["sequence"] for c in chunks] == list(range(len(chunks)))
    return np.concatenate([np.frombuffer(base64.b64decode(c["audio_base64"]), dtype="<i2") for c in chunks])
