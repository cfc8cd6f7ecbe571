"""A real gRPC server on 127.0.0.1 (a free port), built by the app from a container whose
engine, store and tracer provider the tests choose: the fake engine unless a module overrides
the `engine` fixture."""

import grpc
import pytest
from dependency_injector import providers
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters.fake import FakeSpeechEngine, InMemoryObjectStore
from adapters.grpc import ServerOptions
from app.container import build_container, override_settings
from app.grpc_api import build_server
from app.settings import Settings
from app.telemetry import make_tracer_provider
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc

MiB = 1024 * 1024


@pytest.fixture
def engine():
    engine = FakeSpeechEngine()
    yield engine
    engine.close()


@pytest.fixture
def store():
    return InMemoryObjectStore()


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter):
    provider = make_tracer_provider(Settings(), exporter)
    yield provider
    provider.shutdown()


@pytest.fixture
def container(engine, store, tracer_provider):
    container = build_container(Settings(engine="fake", store="none"))
    container.engine.override(providers.Object(engine))
    container.object_store.override(providers.Object(store))
    container.tracer_provider.override(providers.Object(tracer_provider))
    return container


@pytest.fixture
def start_server(container):
    """`start_server(**ServerOptions fields)`: a started server on a free port; warm-up runs in
    the background as in production. Stopped at the end of the test. `max_queue` is the
    service's (HIGGS_MAX_QUEUE), as `serve grpc --max-queue` sets it."""
    servers = []

    def start(warm_up=True, max_queue=None, **options):
        if max_queue is not None:
            override_settings(container, max_queue=max_queue)
        server = build_server(container, ServerOptions(host="127.0.0.1", port=0, **options))
        servers.append(server)
        server.start(warm_up=warm_up)
        return server

    yield start
    for server in servers:
        server.stop(grace=0)


@pytest.fixture
def server(start_server):
    server = start_server()
    assert server.ready.wait(10), "the engine did not warm up"
    return server


@pytest.fixture
def channel(server):
    channel = grpc.insecure_channel(
        server.address, options=[("grpc.max_receive_message_length", 64 * MiB)]
    )
    yield channel
    channel.close()


@pytest.fixture
def stub(channel):
    return pb_grpc.SpeechServiceStub(channel)
