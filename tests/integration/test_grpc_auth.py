"""API keys on a real gRPC channel: missing, wrong and right keys on every method; health
checks stay open; the key appears in no log line."""

import logging

import grpc
import pytest
from dependency_injector import providers
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.grpc import ServerOptions
from app.container import build_container
from app.grpc_api import build_server
from app.settings import Settings
from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.grpc_helpers import domain_code, speech_request

SECRET = "sk-grpc-5e4d3c2b1a"


@pytest.fixture
def guarded(engine, store, caplog):
    caplog.set_level(logging.DEBUG)
    container = build_container(Settings(engine="fake", store="none", api_keys=(SECRET, "sk-second")))
    container.engine.override(providers.Object(engine))
    container.object_store.override(providers.Object(store))
    server = build_server(container, ServerOptions(host="127.0.0.1", port=0))
    server.start()
    assert server.ready.wait(10)
    channel = grpc.insecure_channel(server.address)
    yield pb_grpc.SpeechServiceStub(channel), channel, server.address
    channel.close()
    server.stop(grace=0)


CALLS = {
    "Synthesize": lambda stub, md: stub.Synthesize(speech_request(), timeout=10, metadata=md),
    "StreamSpeech": lambda stub, md: list(stub.StreamSpeech(speech_request(), timeout=10, metadata=md)),
    "ListVoices": lambda stub, md: stub.ListVoices(pb.ListVoicesRequest(), timeout=10, metadata=md),
}


@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer sk-wrong"),), (("authorization", SECRET),),
                                      (("authorization", "Basic " + SECRET),)])
def test_calls_without_a_right_key_are_unauthenticated(guarded, method, metadata):
    stub, _, _ = guarded
    with pytest.raises(grpc.RpcError) as refused:
        CALLS[method](stub, metadata)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert domain_code(refused.value) == "UNAUTHENTICATED"


@pytest.mark.parametrize("method", sorted(CALLS))
def test_calls_with_a_configured_key_run(guarded, method, caplog):
    stub, _, _ = guarded
    result = CALLS[method](stub, (("authorization", f"Bearer {SECRET}"),))
    assert result
    assert CALLS[method](stub, (("authorization", "Bearer sk-second"),))
    assert SECRET not in caplog.text


def test_health_checks_need_no_key(guarded):
    _, channel, _ = guarded
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING


def test_the_client_sends_its_key(guarded, tmp_path):
    from adapters.grpc import SpeechClient
    from core.domain.errors import DomainError
    from core.domain.request import SpeechRequest

    _, _, target = guarded
    request = SpeechRequest(text="Hello there.")
    with SpeechClient(target, api_key=SECRET) as client:
        assert client.stream_to_wav(request, tmp_path / "ok.wav").chunks > 0
    with SpeechClient(target) as client, pytest.raises(DomainError) as refused:
        client.stream_to_wav(request, tmp_path / "no.wav")
    assert refused.value.code == "UNAUTHENTICATED"
