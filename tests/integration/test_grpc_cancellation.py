"""A call that ends early (client cancel, deadline, server shutdown) stops the engine within a
decode step, and the GPU goes to the next request. One request generates at a time."""

import threading

import grpc
import pytest

from adapters.fake import FakeSpeechEngine
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.grpc_helpers import (
    LONG_TEXT,
    TEXT,
    collect,
    kinds,
    settled,
    speech_request,
    wait_for,
)

STEP = 0.03  # seconds per decode step: long enough to tell "stopped" from "one more step"
LONG_FRAMES = 1786  # frames the fake makes for LONG_TEXT


def generate_spans(exporter):
    return [s for s in exporter.get_finished_spans() if s.name == "speech.generate"]


def test_client_cancel_mid_stream_stops_the_engine(stub, engine, exporter):
    engine.step_delay = STEP
    call = stub.StreamSpeech(speech_request(text=LONG_TEXT), timeout=60)
    assert next(call).WhichOneof("event") == "started"
    assert next(call).WhichOneof("event") == "audio"
    at_cancel = engine.steps
    call.cancel()

    stopped_at = settled(lambda: engine.steps)
    assert stopped_at - at_cancel <= 5  # the flag is checked every step: it stopped at once
    assert stopped_at < LONG_FRAMES // 4
    span = wait_for(lambda: generate_spans(exporter))[0]
    assert span.attributes["error.code"] == "CANCELLED"

    # the GPU is free: the next request runs straight away
    engine.step_delay = 0
    result = stub.Synthesize(speech_request(), timeout=10)
    assert result.completed.frames == 100
    assert result.completed.timings.queue < 1.0


def test_deadline_exceeded_stops_the_engine(stub, engine, exporter):
    engine.step_delay = STEP
    messages, error = collect(stub.StreamSpeech(speech_request(text=LONG_TEXT), timeout=0.6))
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert kinds(messages)[0] == "started" and "completed" not in kinds(messages)

    stopped_at = settled(lambda: engine.steps)
    assert stopped_at < LONG_FRAMES // 4
    assert wait_for(lambda: generate_spans(exporter))[0].attributes["error.code"] == "CANCELLED"

    with pytest.raises(grpc.RpcError) as raised:  # a unary call is held to its deadline too
        stub.Synthesize(speech_request(text=LONG_TEXT), timeout=0.6)
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert settled(lambda: engine.steps) - stopped_at < LONG_FRAMES // 4


class CountingEngine(FakeSpeechEngine):
    """Counts how many streams run at once."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.active = self.most_active = 0
        self._count_lock = threading.Lock()

    def speak(self, request, voices, cancel, check=None):
        with self._count_lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            yield from super().speak(request, voices, cancel)
        finally:
            with self._count_lock:
                self.active -= 1


@pytest.fixture
def engine():
    return CountingEngine(step_delay=0.002)


def test_one_request_generates_at_a_time_the_others_wait_their_turn(start_server, engine):
    server = start_server(max_queue=3)
    assert server.ready.wait(10)
    results = [None] * 4

    def synthesize(i):
        with grpc.insecure_channel(server.address) as channel:
            results[i] = pb_grpc.SpeechServiceStub(channel).Synthesize(speech_request(seed=i), timeout=30)

    threads = [threading.Thread(target=synthesize, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None and r.completed.frames == 100 for r in results)
    assert engine.most_active == 1
    queued = sorted(r.completed.timings.queue for r in results)
    assert queued[-1] > queued[0]  # someone waited for the others


def test_stop_lets_in_flight_calls_finish_within_the_grace_period(server, stub, engine):
    engine.step_delay = 0.005  # TEXT takes about half a second
    call = stub.StreamSpeech(speech_request(text=TEXT), timeout=30)
    assert next(call).WhichOneof("event") == "started"
    stopping = threading.Thread(target=server.stop, kwargs={"grace": 20})
    stopping.start()
    messages, error = collect(call)
    assert error is None and kinds(messages)[-1] == "completed"
    stopping.join(20)
    assert not stopping.is_alive()
    with pytest.raises(grpc.RpcError) as raised:  # nothing new once stopped
        stub.Synthesize(speech_request(), timeout=5)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


def test_stop_cancels_what_is_left_after_the_grace_period(server, stub, engine):
    engine.step_delay = STEP
    call = stub.StreamSpeech(speech_request(text=LONG_TEXT), timeout=60)
    assert next(call).WhichOneof("event") == "started"
    assert server.stop(grace=0.3) is True  # the generation thread finished
    messages, error = collect(call)
    assert error is not None and "completed" not in kinds(messages)
    assert settled(lambda: engine.steps) < LONG_FRAMES // 4
