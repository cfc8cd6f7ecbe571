"""The HTTP servers every face runs: the HTTP service wired to the container, an ASGI app on a
thread of its own, the health routes (`/health`, `/ready`, `/metrics`, `/ping`) and the metrics
they serve, and a port bound before anything loads. `serve http`, `serve grpc` and the RunPod
worker all use them; none of those commands imports another for them."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable

from adapters.http import HttpService, create_app
from adapters.runpod.metrics import WorkerMetrics
from app.container import Container
from core.service.speaking import SessionHooks


def build_http_service(container: Container, metrics: WorkerMetrics, routes: str = "all") -> HttpService:
    settings = container.settings()
    return HttpService(
        speech=container.speech_service(),
        api_keys=settings.api_keys,
        completed=metrics.completed,
        failed=metrics.failed,
        sessions=SessionHooks(metrics.segment_first_audio.observe, metrics.session_ended),
        metrics_text=metrics.render,
        routes=routes,
        cors_origins=settings.cors_origins,
    )


class BackgroundServer:
    """An ASGI app served by uvicorn on a thread of its own, on a socket bound now (so a taken
    port is an error here, and port 0 picks one)."""

    def __init__(self, app, host: str, port: int) -> None:
        import socket

        import uvicorn

        self.socket = socket.create_server((host, port), reuse_port=False)
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                        name=f"http-{self.port}", daemon=True)

    def start(self, timeout: float = 10.0) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(5)
        self.socket.close()


def health_server(container: Container, metrics: WorkerMetrics, host: str, port: int) -> BackgroundServer:
    """/health, /ready, /metrics and /ping (the queue worker's probes, RunPod's PORT_HEALTH)."""
    return BackgroundServer(create_app(build_http_service(container, metrics, routes="health")), host, port)


def face_metrics(container: Container, gpu_memory: Callable[[], dict[str, int]] | None = None) -> WorkerMetrics:
    """The metrics every face serves on /metrics (the scaling metrics among them); `gpu_memory`
    adds the device's memory (the RunPod worker's)."""
    service = container.speech_service()
    metrics = WorkerMetrics(gpu_memory=gpu_memory, engine_load=service.load)
    metrics.ready.set_function(lambda: 1.0 if service.is_ready() else 0.0)
    metrics.watch_queue(lambda: service.admission.waiting, lambda: service.admission.running)  # every face
    return metrics


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, taken before anything is loaded or announced: a port in use is
    said once, at once (OSError)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
