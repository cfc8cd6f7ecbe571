"""SpeakText on a real gRPC server (the fake engine, which speaks sessions too): sessions past
--max-sessions are refused at once (RESOURCE_EXHAUSTED, QUEUE_FULL), while the ones open hold no
thread the rest of the server needs (health answers, a unary call runs), and a slot comes back
when a session ends."""

from __future__ import annotations

import queue

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.grpc_helpers import domain_code, speech_request

CONFIG = pb.SpeechRequest(voices=[pb.Voice(name="belinda")], sampling=pb.Sampling(seed=1))


class Session:
    """A SpeakText call whose messages the test sends one at a time."""

    def __init__(self, stub) -> None:
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.call = stub.SpeakText(iter(self.inbox.get, None), timeout=60)
        self.inbox.put(pb.TextInput(config=CONFIG))

    def say(self, **message) -> None:
        self.inbox.put(pb.TextInput(**message))

    def end(self) -> list:
        self.say(done=pb.Done())
        self.inbox.put(None)
        return list(self.call)


@pytest.fixture
def stub(start_server):
    server = start_server(max_sessions=2)
    assert server.ready.wait(10)
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.SpeechServiceStub(channel), channel


def test_sessions_past_the_limit_are_refused_and_the_server_stays_responsive(stub):
    speech, channel = stub
    open_ = [Session(speech), Session(speech)]
    for session in open_:
        session.say(text="Holding a slot. And")
    first = [next(s.call).WhichOneof("event") for s in open_]  # both have started
    assert first == ["started", "started"]
    third = Session(speech)
    with pytest.raises(grpc.RpcError) as refused:
        next(third.call)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and domain_code(refused.value) == "QUEUE_FULL"
    check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    assert speech.Synthesize(speech_request(omit_audio=True), timeout=30).completed.frames > 0
    messages = open_[0].end()
    assert messages[-1].WhichOneof("event") == "completed"
    done = [m.segment.text for m in messages if m.WhichOneof("event") == "segment" and m.segment.done]
    assert done == ["Holding a slot.", "And"]
    again = Session(speech)  # the slot is free again
    again.say(text="Back in. ")
    assert again.end()[-1].WhichOneof("event") == "completed"
    open_[1].end()


def test_a_caller_that_half_closes_without_done_ends_its_session(stub):
    speech, _ = stub
    session = Session(speech)
    session.say(text="No done message, just the end of the stream.")
    session.inbox.put(None)  # half-close
    messages = list(session.call)
    assert messages[-1].WhichOneof("event") == "completed"
    done = [m.segment.text for m in messages if m.WhichOneof("event") == "segment" and m.segment.done]
    assert done == ["No done message, just the end of the stream."]
