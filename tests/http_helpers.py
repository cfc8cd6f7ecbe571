"""`higgs-tts serve http` as its own process on 127.0.0.1, for the tests that call it."""

import subprocess
import sys
import time
import urllib.request

import openai

from tests.integration.runpod_helpers import ROOT, free_port, guarded_env


class HttpServer:
    """One `serve http` process on free ports, its output in `<tmp_path>/<name>.log`. Ready when
    it returns, unless `wait=False` (start several, then `wait_ready` each)."""

    def __init__(self, tmp_path, args=(), ready_path="/ping", wait=True, name=None, **env):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.name = name or f"http-{self.port}"
        self.ready_path = ready_path  # /ping: open, keys or not; /ready: the model is loaded
        self.log_path = tmp_path / f"{self.name}.log"
        self._log = open(self.log_path, "wb")
        self.env = guarded_env(tmp_path, **env)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())", "serve", "http",
             "--host", "127.0.0.1", "--port", str(self.port), *args],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        if wait:
            try:
                self.wait_ready()
            except AssertionError:
                self.stop()  # never leave it running behind a failed test
                raise

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                with urllib.request.urlopen(self.base + self.ready_path, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not become ready: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def client(self, key="unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0, timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
