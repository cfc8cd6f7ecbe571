"""`higgs-tts serve runpod`: the RunPod Serverless worker wired to the container.

Order at start: check the storage, open the health server (/health answers while the model
loads), load and warm the model (CUDA graphs captured), and only then hand the handler to
`runpod.serverless.start`, so the first job never pays for loading.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from typing import Any, Mapping

from adapters.runpod import RunpodWorker, WorkerMetrics, WorkerOptions
from adapters.runpod.handler import MB
from app.cli import EXIT_FAILED, EXIT_OK, emit, warn_if_demo
from app.container import Container, validate_storage
from app.servers import BackgroundServer, bind, face_metrics, health_server
from app.settings import given
from core.domain.errors import DomainError
from core.service import SpeechService

log = logging.getLogger(__name__)


def gpu_memory() -> dict[str, int]:
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {
        "allocated": torch.cuda.memory_allocated(),
        "reserved": torch.cuda.memory_reserved(),
        "max_allocated": torch.cuda.max_memory_allocated(),
    }


def runpod_progress(job: Mapping[str, Any], progress: dict[str, Any]) -> None:
    """progress_update posts to the platform's job-done URL; off the platform there is none,
    and the SDK would try an unusable address, so nothing is sent."""
    if not os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"):
        return
    import runpod

    runpod.serverless.progress_update(dict(job), progress)


def cmd_serve_runpod(args: argparse.Namespace, container: Container) -> int:
    settings = container.settings()
    stream = args.stream or settings.runpod_stream
    if args.api_concurrency != 1:
        print("error: the local test API runs the handler in this process: --rp_api_concurrency must be 1",
              file=sys.stderr)
        return 2
    if args.api:  # the SDK binds its port after the model loaded: a taken one is said before that
        try:
            bind(args.api_host, args.api_port).close()
        except OSError as error:
            print(f"error: cannot serve the local API on {args.api_host}:{args.api_port}: "
                  f"{error.strerror or error}", file=sys.stderr)
            return EXIT_FAILED
    try:
        validate_storage(container)
    except DomainError as error:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    warn_if_demo(container)

    service = container.speech_service()
    metrics = face_metrics(container, gpu_memory)
    servers = _health_servers(container, metrics)
    if servers is None:
        return EXIT_FAILED
    _warm_up(service)
    worker = RunpodWorker(
        service,
        metrics,
        WorkerOptions(**given(
            inline_audio_limit=None if settings.inline_audio_max_mb is None else int(settings.inline_audio_max_mb * MB),
            progress_interval=settings.progress_interval)),
        progress=runpod_progress,
        tracer=container.tracer(),
    )
    config: dict[str, Any] = {
        "handler": worker.handle_stream if stream else worker.handle,
        "concurrency_modifier": worker.concurrency,
        "return_aggregate_stream": True,
    }
    emit("worker", mode="stream" if stream else "sync",
           api=f"{args.api_host}:{args.api_port}" if args.api else None)
    _drain_on_shutdown(service, settings.drain_seconds)
    try:
        _start_runpod(config, _runpod_argv(args))
        emit("stopped")
    finally:
        for server in servers:
            server.stop()
        service.close()
    return EXIT_OK


def _health_servers(container: Container, metrics: WorkerMetrics) -> list[BackgroundServer] | None:
    """/health, /ready, /metrics and /ping on HEALTH_PORT and PORT_HEALTH; None when a port is
    not ours to take (said on stderr)."""
    settings = container.settings()
    servers = []
    for port in dict.fromkeys(p for p in (settings.health_port, settings.ping_port) if p is not None):
        try:
            server = health_server(container, metrics, settings.health_host, port)
        except OSError as error:
            print(f"error: cannot serve health on {settings.health_host}:{port}: {error}", file=sys.stderr)
            for started in servers:
                started.stop()
            return None
        servers.append(server.start())
        emit("health", address=f"{settings.health_host}:{server.port}")
    return servers


def _warm_up(service: SpeechService) -> None:
    """Load and warm the model, and say how the start went: the process's imports and set-up
    until now, then the engine's load and warm-up."""
    started = time.monotonic()
    imports = time.time() - process_started()
    try:
        model = service.warm_up()
        emit("warm", seconds=round(time.monotonic() - started, 2),
             startup={"imports_s": round(imports, 2), **model.startup}, model=model.to_dict())
    except DomainError as error:
        # keep taking jobs: each one answers with this model_error instead of waiting in a
        # queue no worker can serve; /ready stays 503 and says why
        log.error("the model could not be loaded: %s: %s", error.code, error.message)
        emit("warm_failed", error=error.to_dict())


def process_started() -> float:
    """When this process started (wall clock), from the kernel's record of it."""
    import psutil

    return psutil.Process().create_time()


def _drain_on_shutdown(service: SpeechService, seconds: float) -> None:
    """The SDK's worker loop stops taking jobs on SIGTERM or SIGINT, then waits for the running
    ones without end. With this, the service also refuses what still arrives (SHUTTING_DOWN)
    and stops what runs past `seconds` (those jobs fail with SHUTTING_DOWN, so the caller can
    retry), and the loop ends. The SDK has no hook for it: its handler is wrapped."""
    from runpod.serverless.modules import rp_scale

    original = rp_scale.JobScaler.handle_shutdown
    if getattr(original, "drains", False):
        return

    def handle_shutdown(scaler, signum, frame) -> None:
        original(scaler, signum, frame)
        if not service.shutting_down:
            emit("draining", signal=signum, in_flight=service.in_flight, seconds=seconds)
            threading.Thread(target=service.shut_down, args=(seconds,), name="drain", daemon=True).start()

    handle_shutdown.drains = True  # type: ignore[attr-defined]
    rp_scale.JobScaler.handle_shutdown = handle_shutdown  # type: ignore[method-assign]


def _runpod_argv(args: argparse.Namespace) -> list[str]:
    """runpod.serverless.start reads its own flags from sys.argv."""
    rp_args = []
    if args.api:
        rp_args += ["--rp_serve_api", "--rp_api_host", args.api_host, "--rp_api_port", str(args.api_port)]
    if args.test_input:
        rp_args += ["--test_input", args.test_input]
    if args.rp_debugger:
        rp_args += ["--rp_debugger"]
    if args.rp_log_level:
        os.environ["RUNPOD_LOG_LEVEL"] = args.rp_log_level
        rp_args += ["--rp_log_level", args.rp_log_level]
    return rp_args


def _start_runpod(config: dict[str, Any], rp_args: list[str]) -> None:
    # the SDK logs every job's whole output at DEBUG, its default: base64 audio in the logs
    os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")
    import runpod

    argv = sys.argv
    sys.argv = [argv[0], *rp_args]
    try:
        runpod.serverless.start(config)
    finally:
        sys.argv = argv


def register(commands: argparse._SubParsersAction, servers: argparse._SubParsersAction) -> None:
    serve = servers.add_parser(
        "runpod",
        help="the RunPod Serverless worker (loads and warms the model, then takes jobs)",
    )
    serve.add_argument("--stream", action="store_true",
                       help="generator handler: audio chunks and progress as they are made "
                            "(env RUNPOD_STREAM=true)")
    # each option also under the runpod SDK's own name, so its documented commands work as they are
    serve.add_argument("--api", "--rp_serve_api", dest="api", action="store_true",
                       help="serve runpod's local test API (/run, /runsync, /stream, /status)")
    serve.add_argument("--api-host", "--rp_api_host", dest="api_host", default="127.0.0.1",
                       help="address of the local test API (with --api)")
    serve.add_argument("--api-port", "--rp_api_port", dest="api_port", type=int, default=8000,
                       help="port of the local test API (with --api)")
    serve.add_argument("--api-concurrency", "--rp_api_concurrency", dest="api_concurrency", type=int, default=1,
                       help="worker processes of the local test API (runpod's option; 1 here)")
    serve.add_argument("--sdk-log-level", "--rp_log_level", dest="rp_log_level",
                       choices=["ERROR", "WARN", "INFO", "DEBUG"], type=str.upper,
                       help="the runpod SDK's own log level (env RUNPOD_LOG_LEVEL; DEBUG logs whole outputs); "
                            "the service's is `higgs-tts --log-level`")
    serve.add_argument("--debugger", "--rp_debugger", dest="rp_debugger", action="store_true",
                       help="the runpod SDK's debugger output in each job's result")
    serve.add_argument("--test-input", "--test_input", dest="test_input",
                       help='run one job locally and exit, e.g. \'{"input": {...}}\'')
    serve.set_defaults(handler=cmd_serve_runpod)
