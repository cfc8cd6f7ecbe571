"""Real replicas behind a real proxy, all on 127.0.0.1: `higgs-tts serve http --grpc-port` processes
(one engine serving both faces, as a Kubernetes pod does) sharing one S3 server, and Debian's
nginx in front with the configuration tools/nginx_conf.py writes."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.http_helpers import HttpServer
from tests.integration.runpod_helpers import free_port
from tests.seaweed import ACCESS_KEY, SECRET_KEY
from tools.nginx_conf import Replica, prepare, render


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise RuntimeError("nginx is missing: apt-get install nginx (make test installs it as root)")
    return found


class ReplicaProcess(HttpServer):
    """One replica: HTTP and gRPC on free ports (one engine, as a Kubernetes pod serves them);
    started now, ready when `wait_ready` says."""

    def __init__(self, root: Path, name: str, env: dict[str, str]) -> None:
        self.grpc_port = free_port()
        super().__init__(root, args=("--grpc-port", str(self.grpc_port)), ready_path="/ready", wait=False,
                         name=name, **env)
        self.http_port = self.port

    @property
    def replica(self) -> Replica:
        return Replica(f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.grpc_port}")

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples with these labels, from this replica's /metrics."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            match = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
            if match:
                have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
                if all(have.get(k) == v for k, v in labels.items()):
                    total += float(match.group(2))
        return total

    def served(self) -> float:
        return self.metric("higgs_tts_requests_total", outcome="success")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)


class Nginx:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.http_port, self.grpc_port = free_port(), free_port()
        self.conf = root / "nginx.conf"
        self.proc: subprocess.Popen | None = None
        prepare(root)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def write(self, replicas: list[Replica]) -> None:
        self.conf.write_text(render(replicas, f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.grpc_port}",
                                    self.root))
        check = subprocess.run([nginx_binary(), "-t", "-q", "-c", str(self.conf), "-p", str(self.root)],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr

    def start(self, replicas: list[Replica]) -> "Nginx":
        self.write(replicas)
        self._log = open(self.root / "nginx.out", "wb")
        self.proc = subprocess.Popen([nginx_binary(), "-c", str(self.conf), "-p", str(self.root)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "error.log").read_text(errors="replace")
            try:
                urllib.request.urlopen(self.base + "/health", timeout=2)
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("nginx did not start")

    def reload(self, replicas: list[Replica]) -> None:
        """The new upstream list, as Kubernetes' endpoints change when a pod turns ready."""
        self.write(replicas)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)  # the new workers take over; the old ones finish their requests

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self._log.close()


def replica_env(bundle_root: Path, s3_endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    """The settings every replica shares: the model, one bucket for voices, audio and the
    result cache."""
    env = dict(MODEL_PATH=str(bundle_root), HIGGS_STORE="s3", S3_BUCKET=bucket, S3_ENDPOINT_URL=s3_endpoint,
               S3_ADDRESSING_STYLE="path", AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1", HIGGS_VOICES_S3_URI=f"s3://{bucket}/voices",
               HIGGS_RESULT_CACHE="on", HIGGS_CPU_THREADS="1", HIGGS_DRAIN_SECONDS="30")
    return {**env, **extra}
