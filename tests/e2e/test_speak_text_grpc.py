"""gRPC SpeakText against a real `serve http --grpc-port` process (a demo model that runs every
segment to its step budget): the same session as the WebSocket's, in protobuf, through a real
channel and the project's client and CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import grpc
import pytest

from adapters.grpc.client import SpeechClient, channel_options
from core.domain.request import NamedVoice, Sampling, SpeechRequest
from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.runpod_helpers import ROOT, free_port
from tests.sessions import SESSION, TEXT, session, session_server, split

CONFIG = SpeechRequest(text="-", voices=(NamedVoice("belinda"),),
                       sampling=Sampling(seed=SESSION["seed"], max_new_tokens=SESSION["max_new_tokens"]))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    srv = session_server(tmp_path_factory, args=("--grpc-port", str(port)))
    srv.grpc_target = f"127.0.0.1:{port}"
    yield srv
    srv.stop()


def pcm(path) -> bytes:
    import wave

    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


def test_pieces_give_the_audio_of_the_whole_text_and_of_the_websocket_session(server, tmp_path):
    with SpeechClient(server.grpc_target) as client:
        whole = client.speak_text_to_wav(CONFIG, [TEXT], tmp_path / "whole.wav", timeout=120)
        pieces = client.speak_text_to_wav(CONFIG, split(TEXT, "3"), tmp_path / "pieces.wav", timeout=120)
    assert pcm(tmp_path / "whole.wav") == pcm(tmp_path / "pieces.wav") != b""
    assert [s["text"] for s in whole.segments] == [s["text"] for s in pieces.segments]
    assert whole.segments[0]["audio_start_ms"] == 0
    for before, after in zip(whole.segments, whole.segments[1:]):
        assert after["audio_start_ms"] == before["audio_end_ms"]
    assert whole.segments[-1]["audio_end_ms"] == pytest.approx(whole.audio_s * 1000, abs=0.1)
    ws_audio, _, _ = asyncio.run(session(server, [TEXT]))
    assert ws_audio == pcm(tmp_path / "whole.wav")  # one session, whichever face


def test_a_cancel_over_grpc_stops_the_segment_and_the_session_goes_on(server):
    channel = grpc.insecure_channel(server.grpc_target, options=channel_options())
    stub = pb_grpc.SpeechServiceStub(channel)
    config = pb.SpeechRequest(voices=[pb.Voice(name="belinda")], sampling=pb.Sampling(seed=3, max_new_tokens=1500))
    inbox: list = []
    ready = threading.Event()
    more = threading.Event()

    def inputs():
        yield pb.TextInput(config=config)
        yield pb.TextInput(text="word " * 200 + "end. Then more.")
        ready.wait(60)
        yield pb.TextInput(cancel=pb.Cancel())
        more.wait(60)
        yield pb.TextInput(text="After it. ")
        yield pb.TextInput(done=pb.Done())

    for message in stub.SpeakText(inputs(), timeout=120):
        inbox.append(message)
        kind = message.WhichOneof("event")
        if kind == "audio":
            ready.set()
        if kind == "cancelled":
            more.set()
    channel.close()
    kinds = [m.WhichOneof("event") for m in inbox]
    cancelled = next(m.cancelled for m in inbox if m.WhichOneof("event") == "cancelled")
    # segment 0 was the long sentence's first 120 characters; the rest of it was queued: dropped
    assert cancelled.HasField("index") and cancelled.index == 0
    assert cancelled.dropped_text.startswith("word") and cancelled.dropped_text.endswith("end. Then more.")
    done = [m.segment.text for m in inbox if m.WhichOneof("event") == "segment" and m.segment.done]
    assert done[-1] == "After it." and kinds[-1] == "completed"


@pytest.mark.parametrize("first,code", [
    (pb.TextInput(text="Hello."), "INVALID_INPUT"),
    (pb.TextInput(config=pb.SpeechRequest(text="not empty")), "INVALID_INPUT"),
    (pb.TextInput(config=pb.SpeechRequest(sampling=pb.Sampling(top_p=7))), "INVALID_TOP_P"),
])
def test_a_session_that_does_not_start_with_a_valid_config_is_refused(server, first, code):
    channel = grpc.insecure_channel(server.grpc_target)
    stub = pb_grpc.SpeechServiceStub(channel)
    with pytest.raises(grpc.RpcError) as refused:
        list(stub.SpeakText(iter([first, pb.TextInput(done=pb.Done())]), timeout=30))
    channel.close()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(refused.value.trailing_metadata())["error-code"] == code


def test_speak_text_speaks_standard_input_as_it_arrives(server, tmp_path):
    out = tmp_path / "piped.wav"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())", "speak-text",
         "--target", server.grpc_target, "--voice", "belinda", "--seed", "11", "--max-new-tokens", "40",
         "--out", str(out)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
    for piece in split(TEXT, "17"):
        proc.stdin.write(piece.encode())
        proc.stdin.flush()
        time.sleep(0.01)
    proc.stdin.close()
    summary = json.loads(proc.stdout.read())
    assert proc.wait(60) == 0 and summary["success"] is True
    assert " ".join(s["text"] for s in summary["segments"]).split() == TEXT.split()
    ws_audio, _, _ = asyncio.run(session(server, [TEXT]))
    assert pcm(out) == ws_audio  # the same seed and text: the same audio
