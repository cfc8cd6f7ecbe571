"""`higgs-tts serve http`: the HTTP API (OpenAI-compatible speech, voices, health, metrics, the
playground) on uvicorn, wired to the container. The model loads and warms in the background:
/ready and /ping say when it is done."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
from typing import Callable

from adapters.grpc import ServerOptions
from adapters.http import create_app
from adapters.runpod.metrics import WorkerMetrics
from app.cli import EXIT_FAILED, EXIT_OK, emit
from app.container import Container, override_settings, validate_storage
from app.servers import bind, build_http_service, face_metrics, health_server
from app.settings import queue_length
from core.domain.errors import DomainError
from core.service import SpeechService

log = logging.getLogger(__name__)


class DrainingServer:
    """uvicorn, stopping as a worker should: the first SIGTERM or SIGINT makes the service take
    no new request (503 SHUTTING_DOWN, /ready 503) and gives the ones in flight `drain` seconds
    before it stops them; then uvicorn closes. The signal is handled, never re-raised (uvicorn
    re-raises the ones it catches: the process would end by SIGTERM, or with a KeyboardInterrupt
    traceback, instead of exiting 0). A second signal stops at once."""

    def __init__(self, config, service: SpeechService, drain: float,
                 on_signal: Callable[[], None] = lambda: None) -> None:
        import uvicorn

        owner = self

        class Server(uvicorn.Server):
            def handle_exit(self, sig, frame) -> None:
                owner.signalled(sig)

        self.server = Server(config)
        self.service, self.drain, self.on_signal = service, drain, on_signal
        self._draining = False

    def signalled(self, sig: int) -> None:
        if self._draining:
            self.server.force_exit = self.server.should_exit = True
            return
        self._draining = True
        self.on_signal()
        log.info("signal %d: draining (%d in flight, up to %.0f s)", sig, self.service.in_flight, self.drain)
        threading.Thread(target=self._drain_then_exit, name="drain", daemon=True).start()

    def _drain_then_exit(self) -> None:
        stopped = self.service.shut_down(self.drain)
        emit("drained", stopped=stopped)
        self.server.should_exit = True

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        self.server.run(sockets=sockets)


def announce_keys(settings) -> None:
    if settings.api_keys:
        log.info("API keys required (%d configured)", len(settings.api_keys))
    else:
        log.warning("HIGGS_API_KEYS is not set: the API is open to anyone who can reach it")


def cmd_serve_http(args: argparse.Namespace, container: Container) -> int:
    import uvicorn

    if args.max_queue is not None:
        override_settings(container, max_queue=args.max_queue)
    settings = container.settings()
    port = args.port if args.port is not None else (settings.http_port or 8000)
    try:
        listening = bind(args.host, port)
    except OSError as error:
        print(f"error: cannot serve HTTP on {args.host}:{port}: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        validate_storage(container)
    except DomainError as error:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    service = container.speech_service()
    metrics = face_metrics(container)
    app = create_app(build_http_service(container, metrics))
    announce_keys(settings)
    drain = args.grace if args.grace is not None else settings.drain_seconds
    try:
        grpc_server = _grpc_beside(args, container, metrics, drain)
    except RuntimeError as error:
        print(f"error: cannot serve gRPC: {error}", file=sys.stderr)
        return EXIT_FAILED
    config = uvicorn.Config(app, host=args.host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)  # after the drain: the last bytes of stopped streams
    server = DrainingServer(config, service, drain,
                            on_signal=grpc_server.not_serving if grpc_server is not None else lambda: None)
    health = []
    if settings.ping_port and settings.ping_port != port:  # RunPod load balancers probe /ping on PORT_HEALTH
        try:
            health.append(health_server(container, metrics, args.host, settings.ping_port).start())
        except OSError as error:
            print(f"error: cannot serve /ping on {args.host}:{settings.ping_port}: {error}", file=sys.stderr)
            return EXIT_FAILED
    if grpc_server is not None:
        grpc_server.start(warm_up=False)
    threading.Thread(target=_warm, args=(service, grpc_server), name="warm-up", daemon=True).start()
    emit("listening", address=f"{args.host}:{port}", ping=settings.ping_port or port, auth=bool(settings.api_keys),
         grpc=None if grpc_server is None else grpc_server.address)
    try:
        server.run(sockets=[listening])
    finally:
        for other in health:
            other.stop()
        if grpc_server is not None:  # drained with HTTP: what is left are calls the drain stopped
            grpc_server.stop(grace=0)
    service.close()
    emit("stopped")
    return EXIT_OK if server.server.started else EXIT_FAILED


def _grpc_beside(args: argparse.Namespace, container: Container, metrics: WorkerMetrics, drain: float):
    """SpeechService over gRPC on the same engine (a Kubernetes pod serves both faces), when
    --grpc-port or GRPC_PORT asks for it; None otherwise. Raises RuntimeError when the port is taken."""
    port = args.grpc_port if args.grpc_port is not None else container.settings().grpc_port
    if port is None:
        return None
    from app.grpc_api import build_server

    try:
        return build_server(container, ServerOptions(host=args.host, port=port, grace=drain), metrics)
    except RuntimeError as error:
        raise RuntimeError(f"{args.host}:{port}: {error}") from error


def _warm(service: SpeechService, grpc_server) -> None:
    try:
        model = service.warm_up()
        emit("warm", model=model.to_dict())
    except DomainError as error:  # /ready stays 503 and says why; requests get the model_error
        log.error("the model could not be loaded: %s: %s", error.code, error.message)
        return
    if grpc_server is not None:  # its health says SERVING from now on
        grpc_server.serving()


def register(commands: argparse._SubParsersAction, servers: argparse._SubParsersAction) -> None:
    serve = servers.add_parser("http", help="serve the HTTP API: OpenAI-compatible speech, voices, playground")
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve every interface (containers)")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT, else 8000")
    serve.add_argument("--max-queue", type=queue_length, default=None,
                       help="requests that may wait beyond the ones the engine decodes together, for every face of "
                            "this server; the next is refused with QUEUE_FULL (default: $HIGGS_MAX_QUEUE, 8)")
    serve.add_argument("--grace", type=float, default=None,
                       help="seconds in-flight requests get after SIGTERM (default: $HIGGS_DRAIN_SECONDS, 30)")
    serve.add_argument("--grpc-port", type=int, default=None,
                       help="also serve SpeechService over gRPC on this port, on the same engine "
                            "(default: $GRPC_PORT, else none; 0 picks a free port)")
    serve.set_defaults(handler=cmd_serve_http)
