"""A SpeechService client: streams speech into a WAV file as it arrives, and measures how soon
the first audio came."""

from __future__ import annotations

import json
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import grpc

from adapters.grpc.messages import PCM_S16LE, message_from_request
from adapters.grpc.server import MiB
from adapters.grpc.status import error_from_rpc
from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.request import SpeechRequest
from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc

# Every call picks a backend of its own (round robin over the addresses a name resolves to: a
# headless Kubernetes Service gives every ready pod's), and a call refused with UNAVAILABLE
# before its first response (a replica draining or gone, a proxy with no backend) is tried
# again, up to 5 attempts in all; a stream that has started is never repeated.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "higgs_tts.v1.SpeechService"}],
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
}


def channel_options(max_receive_bytes: int = 256 * MiB, max_send_bytes: int = 64 * MiB) -> list[tuple[str, object]]:
    """The options every channel to the service should have (SERVICE_CONFIG, message sizes)."""
    return [
        ("grpc.max_receive_message_length", max_receive_bytes),
        ("grpc.max_send_message_length", max_send_bytes),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ]


@dataclass(frozen=True)
class StreamSummary:
    request_id: str
    out: Path
    first_chunk_s: float | None  # from the call to the first audio chunk
    total_s: float  # from the call to the end of the stream
    chunks: int
    audio_s: float
    sample_rate: int
    completed: pb.Completed | None
    segments: tuple[dict, ...] = ()  # SpeakText: each segment's text and place on the audio's clock

    def to_dict(self) -> dict:
        c = self.completed
        return {
            "success": True,
            "request_id": self.request_id,
            "out": str(self.out),
            "first_chunk_s": None if self.first_chunk_s is None else round(self.first_chunk_s, 4),
            "total_s": round(self.total_s, 4),
            "chunks": self.chunks,
            "audio_s": round(self.audio_s, 4),
            "sample_rate": self.sample_rate,
            "frames": c.frames if c else None,
            "stop_reason": c.stop_reason if c else None,
            "real_time_factor": round(c.real_time_factor, 4) if c else None,
            "audio_url": (c.audio_url or None) if c else None,
            "trace_id": (c.trace_id or None) if c else None,
            **({"segments": list(self.segments)} if self.segments else {}),
            **_asr_pass(c),
        }


def _asr_pass(completed: pb.Completed | None) -> dict:
    """The ASR pass's `verification` and `words` from the metadata (a Struct holds numbers as
    floats: the counts come back as integers)."""
    if completed is None:
        return {}
    from google.protobuf import json_format

    meta = json_format.MessageToDict(completed.metadata)
    out = {k: meta[k] for k in ("verification", "words") if k in meta}
    for entry in out.get("verification", ()):
        for key in ("chunk", "attempts", "kept"):
            entry[key] = int(entry[key])
    return out


class SpeechClient:
    def __init__(
        self,
        target: str,
        intercept: Callable[[grpc.Channel], grpc.Channel] | None = None,
        max_receive_bytes: int = 256 * MiB,
        max_send_bytes: int = 64 * MiB,
        api_key: str | None = None,
    ) -> None:
        """`intercept` wraps the channel (tracing: it puts the caller's trace context into the
        call metadata)."""
        self._channel = grpc.insecure_channel(target, options=channel_options(max_receive_bytes, max_send_bytes))
        self.stub = pb_grpc.SpeechServiceStub(intercept(self._channel) if intercept else self._channel)
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()

    def __enter__(self) -> "SpeechClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def stream_to_wav(
        self, request: SpeechRequest, out: Path, timeout: float | None = None
    ) -> StreamSummary:
        """Writes 16-bit PCM chunks into `out` as they arrive (the header is patched after each,
        so the file is playable at any moment). Raises DomainError when the call fails."""
        call = self.stub.StreamSpeech(message_from_request(request, PCM_S16LE), timeout=timeout,
                                      metadata=self.metadata)
        return _write(call, out, time.perf_counter())

    def speak_text_to_wav(self, config: SpeechRequest, pieces: Iterable[str], out: Path,
                          timeout: float | None = None) -> StreamSummary:
        """A SpeakText session: `config`'s voices, scene and sampling (its text is not sent),
        then `pieces` as they come (an LLM's stream, stdin), then done; the audio into `out` as
        it arrives, the segments in the summary."""
        first = message_from_request(config, PCM_S16LE)
        first.text = ""

        def messages() -> Iterator[pb.TextInput]:
            yield pb.TextInput(config=first)
            for piece in pieces:
                yield pb.TextInput(text=piece)
            yield pb.TextInput(done=pb.Done())

        call = self.stub.SpeakText(messages(), timeout=timeout, metadata=self.metadata)
        return _write(call, out, time.perf_counter())


def _write(call, out: Path, started: float) -> StreamSummary:
    first_chunk = None
    chunks = samples = sample_rate = 0
    completed, wav, segments = None, None, []
    try:
        for message in call:
            kind = message.WhichOneof("event")
            if kind == "started":
                sample_rate = message.started.sample_rate
                out.parent.mkdir(parents=True, exist_ok=True)
                wav = wave.open(str(out), "wb")
                wav.setnchannels(message.started.channels or 1)
                wav.setsampwidth(2)
                wav.setframerate(sample_rate)
            elif kind == "audio":
                first_chunk = time.perf_counter() - started if first_chunk is None else first_chunk
                if wav is None:
                    raise _protocol_error("audio before Started")
                wav.writeframes(message.audio.data)
                chunks, samples = chunks + 1, samples + message.audio.num_samples
            elif kind == "segment" and message.segment.done:
                s = message.segment
                segments.append({"index": s.index, "text": s.text, "audio_start_ms": s.audio_start_ms,
                                 "audio_end_ms": s.audio_end_ms})
            elif kind == "completed":
                completed = message.completed
    except grpc.RpcError as error:
        raise error_from_rpc(error) from None
    finally:
        if wav is not None:
            wav.close()
    if completed is None:
        raise _protocol_error("the stream ended without Completed")
    return StreamSummary(request_id=completed.request_id, out=out, first_chunk_s=first_chunk,
                         total_s=time.perf_counter() - started, chunks=chunks,
                         audio_s=samples / sample_rate if sample_rate else 0.0, sample_rate=sample_rate,
                         completed=completed, segments=tuple(segments))


def _protocol_error(message: str) -> DomainError:
    return DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR, f"unexpected stream: {message}")
