"""Health says NOT_SERVING until the model is warmed, then SERVING; reflection describes the API."""

import threading

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from adapters.fake import FakeSpeechEngine
from adapters.grpc import SERVICE_NAME
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.grpc_helpers import collect, domain_code, kinds, speech_request

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class GatedEngine(FakeSpeechEngine):
    """Warm-up waits until the test opens the gate: the loading window is as long as needed."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def warm_up(self):
        assert self.gate.wait(20), "the test never opened the gate"
        super().warm_up()


@pytest.fixture
def engine():
    engine = GatedEngine()
    yield engine
    engine.gate.set()


def test_health_flips_to_serving_after_warm_up(start_server, engine):
    server = start_server()
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = pb_grpc.SpeechServiceStub(channel)
        for service in ("", SERVICE_NAME):
            check = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert check.status == NOT_SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=20)
        assert next(watch).status == NOT_SERVING

        # while loading, requests are turned away with a status that invites a retry
        messages, error = collect(stub.StreamSpeech(speech_request(), timeout=5))
        assert messages == [] and error.code() is grpc.StatusCode.UNAVAILABLE
        assert domain_code(error) == "MODEL_NOT_READY"
        assert engine.steps == 0

        engine.gate.set()
        assert next(watch).status == SERVING
        watch.cancel()
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == SERVING
        assert kinds(stub.StreamSpeech(speech_request(), timeout=10))[-1] == "completed"

        with pytest.raises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_service(start_server, engine):
    engine.gate.set()
    server = start_server()
    with grpc.insecure_channel(server.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
        service = DescriptorPool(database).FindServiceByName(SERVICE_NAME)
        methods = {m.name: m for m in service.methods}
        assert set(methods) == {"StreamSpeech", "Synthesize", "ListVoices", "SpeakText"}
        assert methods["StreamSpeech"].server_streaming
        assert not methods["Synthesize"].server_streaming
        assert methods["SpeakText"].client_streaming and methods["SpeakText"].server_streaming
        assert methods["StreamSpeech"].input_type.full_name == "higgs_tts.v1.SpeechRequest"
        # the message types come with it, down to the well-known ones they use
        completed = methods["StreamSpeech"].output_type.fields_by_name["completed"].message_type
        assert completed.fields_by_name["metadata"].message_type.full_name == "google.protobuf.Struct"
