"""A small HTTP server inside the worker: liveness, readiness, metrics, and RunPod's /ping.

GET /health   200 while the process serves (the model may still be loading)
GET /ready    200 once the model is loaded and warmed, 503 before (JSON says which)
GET /metrics  Prometheus text
GET /ping     RunPod load-balancing endpoints: 200 ready, 204 still initialising
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from adapters.runpod.metrics import CONTENT_TYPE, WorkerMetrics

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        is_ready: Callable[[], bool],
        describe: Callable[[], dict[str, Any]],
        metrics: WorkerMetrics,
    ) -> None:
        self._is_ready = is_ready
        self._describe = describe
        self._metrics = metrics
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner._route(self)

            def log_message(self, fmt, *args) -> None:  # probes every few seconds: not INFO
                log.debug("%s %s", self.address_string(), fmt % args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "HealthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _route(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if path == "/health":
                self._json(request, 200, {"status": "ok"})
            elif path == "/ready":
                ready = self._ready()
                self._json(request, 200 if ready else 503,
                           {"ready": ready, "model": self._model()})
            elif path == "/ping":
                if self._ready():
                    self._json(request, 200, {"status": "healthy"})
                else:
                    request.send_response(204)
                    request.end_headers()
            elif path == "/metrics":
                self._metrics.ready.set(1 if self._ready() else 0)
                self._send(request, 200, self._metrics.render(), CONTENT_TYPE)
            else:
                self._json(request, 404, {"error": "not found",
                                          "paths": ["/health", "/ready", "/metrics", "/ping"]})
        except Exception:  # a probe never takes the worker down
            log.exception("health endpoint %s failed", path)
            self._json(request, 500, {"error": "internal error"})

    def _ready(self) -> bool:
        try:
            return bool(self._is_ready())
        except Exception:
            return False

    def _model(self) -> dict[str, Any]:
        try:
            return self._describe()
        except Exception as exc:
            return {"error": str(exc)}

    def _json(self, request, status: int, body: dict[str, Any]) -> None:
        self._send(request, status, json.dumps(body, default=str).encode(), "application/json")

    @staticmethod
    def _send(request, status: int, data: bytes, content_type: str) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
