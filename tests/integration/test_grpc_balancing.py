"""The client's service config on a real channel to two real servers: each call picks a server
of its own (round robin), a call refused with UNAVAILABLE before it started (a draining server)
is tried again on the other one, and one that fails for any other reason is not repeated."""

from __future__ import annotations

import threading

import grpc
import pytest
from dependency_injector import providers

from adapters.fake import FakeSpeechEngine
from adapters.grpc import ServerOptions
from adapters.grpc.client import SERVICE_CONFIG, channel_options
from app.container import build_container
from app.grpc_api import build_server
from app.servers import face_metrics
from app.settings import Settings
from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.grpc_helpers import domain_code, speech_request


def _replica():
    engine = FakeSpeechEngine()
    container = build_container(Settings(engine="fake", store="none"))
    container.engine.override(providers.Object(engine))
    metrics = face_metrics(container)
    server = build_server(container, ServerOptions(host="127.0.0.1", port=0, grace=0), metrics)
    server.start()
    assert server.ready.wait(10)
    return server, metrics


def _served(metrics) -> float:
    return sum(sample.value for family in metrics.registry.collect() if family.name == "higgs_tts_requests"
               for sample in family.samples if sample.labels.get("outcome") == "success"
               and sample.name.endswith("_total"))


@pytest.fixture
def replicas():
    started = [_replica() for _ in range(2)]
    yield started
    for server, _ in started:
        server.stop(grace=0)


def _stub(replicas):
    target = "ipv4:" + ",".join(f"127.0.0.1:{server.port}" for server, _ in replicas)
    channel = grpc.insecure_channel(target, options=channel_options())
    return channel, pb_grpc.SpeechServiceStub(channel)


def test_the_service_config_names_the_service_and_retries_only_unavailable():
    method = SERVICE_CONFIG["methodConfig"][0]
    assert method["name"] == [{"service": pb.DESCRIPTOR.services_by_name["SpeechService"].full_name}]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert SERVICE_CONFIG["loadBalancingConfig"] == [{"round_robin": {}}]


def test_calls_on_one_channel_spread_over_every_server(replicas):
    channel, stub = _stub(replicas)
    with channel:
        for i in range(12):
            result = stub.Synthesize(speech_request(text=f"Call number {i}.", omit_audio=True), timeout=20)
            assert result.completed.frames > 0
    counts = [_served(metrics) for _, metrics in replicas]
    assert sum(counts) == 12 and min(counts) >= 4, counts  # per call, not per connection


def test_a_call_refused_by_a_draining_server_is_retried_on_the_other(replicas):
    (draining, drained_metrics), (_, live_metrics) = replicas
    draining.service.shut_down(0)  # takes no new call: UNAVAILABLE (SHUTTING_DOWN) before any response
    channel, stub = _stub(replicas)
    with channel:
        for i in range(10):
            messages = list(stub.StreamSpeech(speech_request(text=f"Stream {i}."), timeout=20))
            assert messages[0].WhichOneof("event") == "started" and messages[-1].WhichOneof("event") == "completed"
        results = [stub.Synthesize(speech_request(text=f"Unary {i}.", omit_audio=True), timeout=20) for i in range(5)]
    assert all(r.completed.frames > 0 for r in results)
    assert _served(live_metrics) == 15 and _served(drained_metrics) == 0
    refused = [s for f in drained_metrics.registry.collect() if f.name == "higgs_tts_errors"
               for s in f.samples if s.name.endswith("_total") and s.labels.get("code") == "SHUTTING_DOWN"]
    assert refused and refused[0].value >= 1  # the refusals that were retried, counted where they happened


def test_with_every_server_draining_the_caller_gets_unavailable_after_its_attempts(replicas):
    for server, _ in replicas:
        server.service.shut_down(0)
    channel, stub = _stub(replicas)
    with channel, pytest.raises(grpc.RpcError) as failed:
        stub.Synthesize(speech_request(omit_audio=True), timeout=20)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE and domain_code(failed.value) == "SHUTTING_DOWN"
    attempts = sum(s.value for _, m in replicas for f in m.registry.collect() if f.name == "higgs_tts_errors"
                   for s in f.samples if s.name.endswith("_total"))
    assert attempts == SERVICE_CONFIG["methodConfig"][0]["retryPolicy"]["maxAttempts"]


def test_a_call_that_fails_for_another_reason_is_not_repeated(replicas):
    channel, stub = _stub(replicas)
    with channel, pytest.raises(grpc.RpcError) as failed:
        stub.Synthesize(speech_request(voice="no-such-voice", omit_audio=True), timeout=20)
    assert domain_code(failed.value) == "UNKNOWN_VOICE"
    errors = sum(s.value for _, m in replicas for f in m.registry.collect() if f.name == "higgs_tts_errors"
                 for s in f.samples if s.name.endswith("_total"))
    assert errors == 1


def test_waiting_calls_are_counted_in_the_scaling_metric():
    engine = FakeSpeechEngine(capacity=1, step_delay=0.01)
    container = build_container(Settings(engine="fake", store="none", max_queue=4))
    container.engine.override(providers.Object(engine))
    metrics = face_metrics(container)
    server = build_server(container, ServerOptions(host="127.0.0.1", port=0, grace=0), metrics)
    server.start()
    assert server.ready.wait(10)
    seen: list[float] = []
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=channel_options())
        stub = pb_grpc.SpeechServiceStub(channel)
        calls = [threading.Thread(target=lambda: stub.Synthesize(speech_request(omit_audio=True), timeout=30))
                 for _ in range(3)]
        for call in calls:
            call.start()
        stop = threading.Event()

        def scrape():
            while not stop.is_set():
                text = metrics.render().decode()
                seen.extend(float(line.split()[-1]) for line in text.splitlines()
                            if line.startswith("higgs_tts_requests_waiting "))
        scraper = threading.Thread(target=scrape)
        scraper.start()
        for call in calls:
            call.join(30)
        stop.set()
        scraper.join()
        channel.close()
    finally:
        server.stop(grace=0)
    assert max(seen) == 2  # one decodes, two wait for its slot
    assert seen[-1] == 0
