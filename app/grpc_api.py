"""`higgs-tts serve grpc` and `higgs-tts stream`: the gRPC server wired to the container, and a
client that writes the streamed audio to a WAV file."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator

from opentelemetry.instrumentation.grpc import (
    client_interceptor,
    filters,
    intercept_channel,
    server_interceptor,
)

from adapters.grpc import SERVICE_NAME, ServerOptions, SpeechClient, SpeechServer
from adapters.grpc.auth import ApiKeyInterceptor
from adapters.grpc.server import MiB
from adapters.runpod.metrics import WorkerMetrics
from app.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, _add_request_arguments, _fail, emit, request_from_args
from app.container import Container, override_settings, validate_storage
from app.servers import face_metrics, health_server  # the health routes: one app on every face
from app.settings import queue_length
from core.domain.errors import DomainError
from core.service.speaking import SessionHooks

log = logging.getLogger(__name__)


def build_server(container: Container, options: ServerOptions, metrics: WorkerMetrics | None = None) -> SpeechServer:
    """The server on the container's speech service. Calls to SpeechService are
    traced, continuing the caller's W3C trace context from the call metadata; with `metrics`,
    every call's end and the calls waiting are counted there."""
    tracing = server_interceptor(
        tracer_provider=container.tracer_provider(), filter_=filters.service_name(SERVICE_NAME)
    )
    keys = container.settings().api_keys
    interceptors = [ApiKeyInterceptor(keys), tracing] if keys else [tracing]
    if keys:
        log.info("API keys required (%d configured)", len(keys))
    else:
        log.warning("HIGGS_API_KEYS is not set: the gRPC API is open to anyone who can reach it")
    if metrics is None:
        return SpeechServer(container.speech_service(), options, interceptors=interceptors)
    server = SpeechServer(container.speech_service(), options, interceptors=interceptors,
                          completed=metrics.completed, failed=metrics.failed,
                          sessions=SessionHooks(metrics.segment_first_audio.observe, metrics.session_ended))
    return server



def cmd_serve_grpc(args: argparse.Namespace, container: Container) -> int:
    if args.max_queue is not None:
        override_settings(container, max_queue=args.max_queue)
    options = ServerOptions(
        host=args.host,
        port=args.port,
        grace=args.grace if args.grace is not None else container.settings().drain_seconds,
        max_receive_bytes=int(args.max_receive_mb * MiB),
        max_sessions=args.max_sessions,
    )
    try:
        validate_storage(container)
    except DomainError as error:  # a misconfigured bucket is found now, not at the first request
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        return EXIT_FAILED

    metrics = face_metrics(container)
    try:
        server = build_server(container, options, metrics)
    except RuntimeError as error:  # the port is taken or the address is not ours
        print(f"error: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return EXIT_FAILED
    health = None
    port = container.settings().health_port
    if port is not None:  # /health, /ready and /metrics for probes and Prometheus
        try:
            health = health_server(container, metrics, container.settings().health_host, port).start()
        except OSError as error:
            print(f"error: cannot serve health on port {port}: {error}", file=sys.stderr)
            return EXIT_FAILED
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    # the address on stdout: with --port 0 this is how a caller learns the port
    emit("listening", address=server.address, service=SERVICE_NAME, health=port)
    while not stop.wait(0.5):
        pass
    finished = server.stop()
    if health is not None:
        health.stop()
    loaded = server.join_warm_up(timeout=max(10.0, options.grace))
    if finished and loaded:
        container.speech_service().close()
    emit("stopped", clean=finished and loaded)
    code = EXIT_OK if finished else EXIT_FAILED
    if not loaded:  # a load still runs in native code: leave without tearing it down under it
        log.warning("the model was still loading at shutdown; exiting without waiting for it")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_stream(args: argparse.Namespace, container: Container) -> int:
    try:
        request = request_from_args(args)
    except DomainError as error:
        return _fail(error)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # the client's span is the root of the trace the server continues
    tracing = client_interceptor(tracer_provider=container.tracer_provider())
    key = args.api_key or os.environ.get("HIGGS_API_KEY")
    with SpeechClient(args.target, intercept=lambda channel: intercept_channel(channel, tracing),
                      api_key=key) as client:
        # the chunks go into a WAV as they come (playable at any moment); another --format is
        # encoded from it at the end
        wav = args.out if args.format == "wav" else args.out.with_name(args.out.name + ".partial.wav")
        try:
            summary = client.stream_to_wav(request, wav, timeout=args.timeout)
        except DomainError as error:
            if wav != args.out:
                wav.unlink(missing_ok=True)
            return _fail(error)
    result = summary.to_dict()
    if wav != args.out:
        _encode_file(wav, args.out, args.format)
        result["format"] = args.format
    print(json.dumps(result))
    return EXIT_OK


def _encode_file(wav: Path, out: Path, fmt: str) -> None:
    """The streamed WAV as `fmt` (flac, ogg, mp3) in `out`; the WAV goes."""
    from array import array

    import soundfile

    from adapters.soundfile import SoundfileEncoder

    samples, rate = soundfile.read(str(wav), dtype="float32")
    out.write_bytes(SoundfileEncoder().encode(array("f", samples.tobytes()), rate, fmt).data)
    wav.unlink()


def stdin_pieces(stream=None, size: int = 256) -> Iterator[str]:
    """Standard input as it comes (a pipe from an LLM), decoded piece by piece."""
    import codecs

    raw = stream if stream is not None else sys.stdin.buffer
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    read = getattr(raw, "read1", raw.read)
    while chunk := read(size):
        if text := decoder.decode(chunk):
            yield text
    if tail := decoder.decode(b"", final=True):
        yield tail


def cmd_speak_text(args: argparse.Namespace, container: Container) -> int:
    from core.domain.request import Sampling, SpeechRequest, parse_voice_list

    try:
        fields = {"seed": args.seed, "temperature": args.temperature, "max_new_tokens": args.max_new_tokens}
        config = SpeechRequest(text="-", voices=parse_voice_list(args.voice) if args.voice else (),
                               scene_prompt=args.scene,
                               sampling=Sampling(**{k: v for k, v in fields.items() if v is not None}))
    except DomainError as error:
        return _fail(error)
    tracing = client_interceptor(tracer_provider=container.tracer_provider())
    key = args.api_key or os.environ.get("HIGGS_API_KEY")
    with SpeechClient(args.target, intercept=lambda channel: intercept_channel(channel, tracing),
                      api_key=key) as client:
        try:
            summary = client.speak_text_to_wav(config, stdin_pieces(), args.out, timeout=args.timeout)
        except DomainError as error:
            return _fail(error)
        except UnicodeDecodeError as error:
            print(f"error: standard input is not UTF-8: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
    print(json.dumps(summary.to_dict()))
    return EXIT_OK


def register(commands: argparse._SubParsersAction, servers: argparse._SubParsersAction) -> None:
    defaults = ServerOptions()
    serve = servers.add_parser("grpc", help="serve SpeechService over gRPC (health, reflection)")
    serve.add_argument("--host", default=defaults.host, help="0.0.0.0 to serve every interface (containers)")
    serve.add_argument("--port", type=int, default=defaults.port, help="0 picks a free port")
    serve.add_argument("--max-queue", type=queue_length, default=None,
                       help="requests that may wait beyond the ones the engine decodes together, for every face of "
                            "this server; the next is refused with QUEUE_FULL (default: $HIGGS_MAX_QUEUE, 8)")
    serve.add_argument("--grace", type=float, default=None,
                       help="seconds in-flight calls get to finish after SIGTERM before they are stopped "
                            "(default: $HIGGS_DRAIN_SECONDS, 30)")
    serve.add_argument("--max-sessions", type=int, default=defaults.max_sessions,
                       help="SpeakText sessions open at once; more get RESOURCE_EXHAUSTED")
    serve.add_argument("--max-receive-mb", type=float, default=defaults.max_receive_bytes / MiB,
                       help="largest request (inline reference audio) in MiB")
    serve.set_defaults(handler=cmd_serve_grpc)

    stream = commands.add_parser(
        "stream", help="stream speech from a gRPC server into a WAV file; JSON timings on stdout"
    )
    stream.add_argument("--target", required=True, help="HOST:PORT of the server")
    _add_request_arguments(stream)
    stream.add_argument("--out", type=Path, required=True, help="the WAV file, written as chunks arrive")
    stream.add_argument("--timeout", type=float, default=None, help="deadline of the call in seconds")
    stream.add_argument("--api-key", default=None, help="the server's API key (default: $HIGGS_API_KEY)")
    stream.set_defaults(handler=cmd_stream)

    speak = commands.add_parser(
        "speak-text", help="speak standard input as it arrives (SpeakText: pipe an LLM into it) into a WAV file")
    speak.add_argument("--target", required=True, help="HOST:PORT of the server")
    speak.add_argument("--voice", help="voice prompt name(s), comma-separated, one per speaker")
    speak.add_argument("--scene", help="scene description that steers the tone")
    speak.add_argument("--seed", type=int, default=None, help="same seed, same audio, however the text is split")
    speak.add_argument("--temperature", type=float, default=None, help="(0, 2] (default: the server's, 0.3)")
    speak.add_argument("--max-new-tokens", type=int, default=None, help="decode steps per segment")
    speak.add_argument("--out", type=Path, required=True, help="the WAV file, written as audio arrives")
    speak.add_argument("--timeout", type=float, default=None, help="deadline of the whole session in seconds")
    speak.add_argument("--api-key", default=None, help="the server's API key (default: $HIGGS_API_KEY)")
    speak.set_defaults(handler=cmd_speak_text)
