"""The gRPC server: SpeechService, the standard health service and server reflection.

Health says NOT_SERVING until the engine is loaded and warmed (a load balancer sends nothing
before), then SERVING; on shutdown it says NOT_SERVING again while in-flight calls finish."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from adapters.grpc.generation import GenerationQueue
from adapters.grpc.messages import parse_speech_request, parse_text_input
from adapters.grpc.servicer import SpeechServicer
from core.domain.errors import DomainError
from core.domain.events import SpeechCompleted
from core.domain.request import MAX_REFERENCE_AUDIO_BYTES
from core.service.speaking import SessionHooks
from core.service.speech_service import SpeechService
from higgs_tts.v1 import speech_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpeechService"].full_name
MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 50051  # 0: any free port (see SpeechServer.port)
    grace: float = 30.0  # seconds in-flight calls get to finish on shutdown
    # a request carries inline reference clips (each at most 12 MiB): two fit with room to spare
    max_receive_bytes: int = 2 * MAX_REFERENCE_AUDIO_BYTES + 4 * MiB
    max_send_bytes: int = 256 * MiB  # a Synthesize result holds the whole file
    spare_threads: int = 8  # for health checks, reflection, ListVoices and refusals
    max_sessions: int = 16  # SpeakText sessions open at once (each holds a thread while it lasts)


def _add_servicer(servicer: SpeechServicer, server: grpc.Server) -> None:
    """As the generated `add_SpeechServiceServicer_to_server`, with a request deserializer that
    turns an undecodable request into a domain error instead of gRPC's bare INTERNAL."""
    handlers = {
        "StreamSpeech": grpc.unary_stream_rpc_method_handler(
            servicer.StreamSpeech, request_deserializer=parse_speech_request,
            response_serializer=pb.SpeechEvent.SerializeToString),
        "Synthesize": grpc.unary_unary_rpc_method_handler(
            servicer.Synthesize, request_deserializer=parse_speech_request,
            response_serializer=pb.SpeechResult.SerializeToString),
        "SpeakText": grpc.stream_stream_rpc_method_handler(
            servicer.SpeakText, request_deserializer=parse_text_input,
            response_serializer=pb.SpeechEvent.SerializeToString),
        "ListVoices": grpc.unary_unary_rpc_method_handler(
            servicer.ListVoices, request_deserializer=pb.ListVoicesRequest.FromString,
            response_serializer=pb.ListVoicesResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class SpeechServer:
    def __init__(
        self,
        service: SpeechService,
        options: ServerOptions = ServerOptions(),
        interceptors: Sequence[grpc.ServerInterceptor] = (),
        completed: Callable[[SpeechCompleted, float], None] = lambda event, seconds: None,
        failed: Callable[[DomainError, float], None] = lambda error, seconds: None,
        sessions: SessionHooks | None = None,
    ) -> None:
        self.options = options
        self.service = service
        # a thread for each request the service admits: those generating and those queued
        self.generation = GenerationQueue(workers=service.capacity + service.admission.max_queue)
        self.servicer = SpeechServicer(service, self.generation, completed=completed, failed=failed,
                                       sessions=sessions, max_sessions=options.max_sessions)
        self.health = health.HealthServicer()
        self.ready = threading.Event()
        self.warm_up_error: BaseException | None = None
        self._warm_up_thread: threading.Thread | None = None
        # every admitted call holds a thread while it streams; the rest are spare
        threads = self.generation.workers + options.max_sessions + options.spare_threads
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
            interceptors=list(interceptors),
            options=[
                ("grpc.max_receive_message_length", options.max_receive_bytes),
                ("grpc.max_send_message_length", options.max_send_bytes),
                ("grpc.so_reuseport", 0),  # a busy port is an error, not a shared one
            ],
        )
        _add_servicer(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.port = self._server.add_insecure_port(f"{options.host}:{options.port}")
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

    def not_serving(self) -> None:
        """Health says NOT_SERVING now (a drain began elsewhere: the HTTP face's signal)."""
        self.health.enter_graceful_shutdown()

    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.port}"

    def start(self, warm_up: bool = True) -> None:
        """Serve now; load and warm the model in the background, then say SERVING."""
        self._server.start()
        log.info("gRPC %s listening on %s", SERVICE_NAME, self.address)
        if warm_up:
            self._warm_up_thread = threading.Thread(target=self._warm_up, name="warm-up", daemon=True)
            self._warm_up_thread.start()

    def _warm_up(self) -> None:
        try:
            model = self.service.warm_up()
        except Exception as exc:  # health stays NOT_SERVING; requests get UNAVAILABLE
            self.warm_up_error = exc
            log.exception("the model could not be loaded; health stays NOT_SERVING")
            return
        self.serving()
        log.info("model ready: %s", model.to_dict())

    def serving(self) -> None:
        """Health says SERVING (the model is warm: this server's warm-up, or another face's)."""
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.ready.set()

    def _set_health(self, status) -> None:
        for service in ("", SERVICE_NAME):
            self.health.set(service, status)

    def stop(self, grace: float | None = None) -> bool:
        """Say NOT_SERVING and refuse new calls (UNAVAILABLE, SHUTTING_DOWN), give in-flight ones
        `grace` seconds, then stop what is left with SHUTTING_DOWN (the engine stops within a
        step) and close. True when the generation threads have finished."""
        grace = self.options.grace if grace is None else grace
        self.health.enter_graceful_shutdown()
        log.info("shutting down: in-flight calls get %.1fs", grace)
        stopped = self.service.shut_down(grace)
        if stopped:
            log.warning("shutdown: %d call(s) stopped after %.1fs", stopped, grace)
        self._server.stop(5.0).wait()  # the stopped calls' last messages, then the transport
        finished = self.generation.close(timeout=max(5.0, grace))
        if not finished:
            log.warning("generation did not stop after the grace period")
        return finished

    def join_warm_up(self, timeout: float | None = None) -> bool:
        """Wait for a model load still in progress. True when none is running: a process must
        not exit while a thread is inside torch or safetensors (its native state is torn down
        under it: 'terminate called without an active exception')."""
        thread = self._warm_up_thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)
