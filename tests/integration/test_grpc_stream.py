"""StreamSpeech, Synthesize and ListVoices over a real loopback channel."""

import json
from array import array

import grpc
import pytest

from adapters.fake.voices import tone_clip
from core.domain.audio import to_pcm16
from higgs_tts.v1 import speech_pb2 as pb
from tests.integration.grpc_helpers import (
    SAMPLES_PER_FRAME,
    collect,
    domain_code,
    kinds,
    speech_request,
)

MiB = 1024 * 1024


def pcm(messages):
    return b"".join(m.audio.data for m in messages if m.WhichOneof("event") == "audio")


def test_stream_order_started_chunks_completed(stub):
    messages = list(stub.StreamSpeech(speech_request(), timeout=10))
    names = kinds(messages)
    assert names[0] == "started" and names[-1] == "completed"
    assert set(names[1:-1]) == {"audio", "progress"}
    started = messages[0].started
    assert started.sample_rate == 24000 and started.channels == 1
    assert started.encoding == pb.AUDIO_ENCODING_PCM_S16LE
    assert list(started.voices) == ["belinda"]

    chunks = [m.audio for m in messages if m.WhichOneof("event") == "audio"]
    assert len(chunks) >= 3
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    position = 0
    for chunk in chunks:  # contiguous, in frame order, two bytes a sample
        assert chunk.frame_index * SAMPLES_PER_FRAME == position
        assert len(chunk.data) == 2 * chunk.num_samples
        position += chunk.num_samples
    frames = [m.progress.frames_done for m in messages if m.WhichOneof("event") == "progress"]
    assert frames == sorted(frames)

    completed = messages[-1].completed
    assert completed.request_id == started.request_id
    assert completed.frames * SAMPLES_PER_FRAME == position
    assert completed.duration_seconds == pytest.approx(position / 24000)
    assert completed.stop_reason == "end_token"
    assert completed.timings.total >= completed.timings.first_audio > 0
    assert completed.metadata["model"]["engine"] == "fake"


def test_stream_chunks_equal_synthesize_audio_for_the_same_seed(stub):
    streamed = pcm(stub.StreamSpeech(speech_request(seed=11), timeout=10))
    result = stub.Synthesize(speech_request(seed=11), timeout=10)
    assert result.format == "wav" and result.content_type == "audio/wav"
    assert result.audio[:4] == b"RIFF" and len(result.audio) == 44 + len(streamed)
    assert result.audio[44:] == streamed
    assert result.completed.frames * SAMPLES_PER_FRAME * 2 == len(streamed)
    # and the seed matters: another one gives other audio
    assert pcm(stub.StreamSpeech(speech_request(seed=12), timeout=10)) != streamed


def test_float32_chunks_are_the_same_samples(stub):
    pcm16 = pcm(stub.StreamSpeech(speech_request(seed=3), timeout=10))
    messages = list(
        stub.StreamSpeech(speech_request(seed=3, encoding=pb.AUDIO_ENCODING_PCM_F32LE), timeout=10)
    )
    assert messages[0].started.encoding == pb.AUDIO_ENCODING_PCM_F32LE
    floats = array("f")
    for m in messages:
        if m.WhichOneof("event") == "audio":
            assert len(m.audio.data) == 4 * m.audio.num_samples
            floats.frombytes(m.audio.data)
    assert len(floats) * 2 == len(pcm16)
    assert to_pcm16(floats).tobytes() == pcm16


def test_stored_output_comes_before_completed(stub, store):
    request = speech_request(output=pb.OutputTarget(s3_bucket="tts-out", s3_key="calls/a.wav"))
    messages = list(stub.StreamSpeech(request, timeout=10))
    assert kinds(messages)[-2:] == ["stored", "completed"]
    stored, completed = messages[-2].stored, messages[-1].completed
    assert (stored.bucket, stored.key) == ("tts-out", "calls/a.wav")
    assert completed.audio_url == stored.url == "memory://tts-out/calls/a.wav"
    assert store.get("tts-out", "calls/a.wav")[44:] == pcm(messages)
    record = json.loads(store.get("tts-out", stored.record_key))
    assert record["request_id"] == completed.request_id


def test_synthesize_can_leave_the_audio_out_when_it_is_stored(stub, store):
    request = speech_request(output=pb.OutputTarget(s3_bucket="tts-out", s3_key="b.wav"), omit_audio=True)
    result = stub.Synthesize(request, timeout=10)
    assert result.audio == b""
    assert result.stored.key == "b.wav" and result.completed.audio_url == "memory://tts-out/b.wav"
    assert store.get("tts-out", "b.wav")[:4] == b"RIFF"


def test_inline_reference_audio_beyond_grpc_default_message_size(stub, server):
    """A 6 MiB clip is over gRPC's default 4 MiB limit but within the server's; a 13 MiB one
    reaches the domain's 12 MiB rule; one past the server's limit is refused by gRPC itself."""
    def request_with(size):
        clip = tone_clip(180.0, seconds=0.5)
        clip += bytes(size - len(clip))
        voice = pb.Voice(reference=pb.ReferenceAudio(audio=clip, transcript="A tone.", name="mine"))
        return pb.SpeechRequest(text="Hello.", voices=[voice], sampling=pb.Sampling(seed=1))

    messages = list(stub.StreamSpeech(request_with(6 * MiB), timeout=20))
    assert list(messages[0].started.voices) == ["mine"]
    assert kinds(messages)[-1] == "completed"

    _, error = collect(stub.StreamSpeech(request_with(13 * MiB), timeout=20))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert domain_code(error) == "INVALID_REFERENCE_AUDIO"

    too_big = server.options.max_receive_bytes + MiB
    _, error = collect(stub.StreamSpeech(request_with(too_big), timeout=20))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_list_voices(stub):
    voices = stub.ListVoices(pb.ListVoicesRequest(), timeout=5).voices
    assert {v.name for v in voices} == {"belinda", "en_man"}
    assert all(v.transcript for v in voices)
    assert not any(v.HasField("duration_seconds") for v in voices)
