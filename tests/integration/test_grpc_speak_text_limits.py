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


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand (protobuf itself refuses bad UTF-8)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


VALID_CONFIG = pb.TextInput(config=CONFIG).SerializeToString()
HOSTILE = {  # name: (the messages' bytes, the domain code)
    "text not UTF-8 first": ([_field(2, b"\xff\xfe")], "INVALID_TRANSCRIPT"),
    "text not UTF-8 later": ([VALID_CONFIG, _field(2, b"ok \xc3\x28")], "INVALID_TRANSCRIPT"),
    "a lone surrogate in the text": ([VALID_CONFIG, _field(2, "\ud800".encode("utf-8", "surrogatepass"))],
                                     "INVALID_TRANSCRIPT"),
    "scene not UTF-8": ([_field(1, _field(3, b"\xff"))], "INVALID_SCENE_PROMPT"),
    "voice name not UTF-8": ([_field(1, _field(2, _field(1, b"\xfe")))], "INVALID_VOICE_NAME"),
    "not protobuf": ([b"\xff\xff\xff\xff"], "INVALID_INPUT"),
    "text before config": ([pb.TextInput(text="Hi.").SerializeToString()], "INVALID_INPUT"),
    "config twice": ([VALID_CONFIG, VALID_CONFIG], "INVALID_INPUT"),
    "config with text": ([pb.TextInput(config=pb.SpeechRequest(text="x")).SerializeToString()], "INVALID_INPUT"),
    "config with an output": ([pb.TextInput(config=pb.SpeechRequest(output=pb.OutputTarget(s3_bucket="my-bucket")))
                               .SerializeToString()], "INVALID_INPUT"),
    "a bad seed": ([pb.TextInput(config=pb.SpeechRequest(sampling=pb.Sampling(seed=-1))).SerializeToString()],
                   "INVALID_SEED"),
    "a bad speed": ([pb.TextInput(config=pb.SpeechRequest(speed=9)).SerializeToString()], "INVALID_SPEED"),
    "a 10,001-character piece": ([VALID_CONFIG, pb.TextInput(text="a" * 10_001).SerializeToString()],
                                 "INVALID_TRANSCRIPT"),
    "a control character": ([VALID_CONFIG, pb.TextInput(text="a\x07b").SerializeToString()], "INVALID_TRANSCRIPT"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_session_messages_are_refused_with_their_code(stub, name):
    _, channel = stub
    raw = channel.stream_stream("/higgs_tts.v1.SpeechService/SpeakText", request_serializer=lambda b: b,
                                response_deserializer=pb.SpeechEvent.FromString)
    messages, code = HOSTILE[name]
    with pytest.raises(grpc.RpcError) as refused:
        list(raw(iter(messages), timeout=30))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert domain_code(refused.value) == code


@pytest.mark.parametrize("said", [[], [{"flush": pb.Flush()}], [{"text": "cut before"}, {"cancel": pb.Cancel()}]])
def test_a_session_that_says_nothing_completes_with_no_audio(stub, said):
    speech, _ = stub
    session = Session(speech)
    for message in said:
        session.say(**message)
    kinds = [m.WhichOneof("event") for m in session.end()]
    assert kinds[0] == "started" and kinds[-1] == "completed" and "audio" not in kinds
