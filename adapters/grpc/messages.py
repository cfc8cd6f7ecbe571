"""The protocol's messages <-> the domain's request and events.

Every check on a request is the domain's own (its dataclasses validate themselves); this module
only moves fields, turns enums into domain values and samples into bytes."""

from __future__ import annotations

import json
from array import array
from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError

from adapters.grpc.verification import TIMESTAMPS, VERIFY_MODES, message_fields, verified_message
from core.domain.errors import DomainError, ErrorCode, validation_error
from core.domain.events import (
    AudioChunk,
    AudioStored,
    ChunkVerified,
    Progress,
    SpeechCompleted,
    SpeechEvent,
    SpeechStarted,
)
from core.domain.request import SAMPLING_FIELDS, ChunkMethod, InlineVoice, NamedVoice, OutputFormat, SpeechRequest
from core.domain.request_fields import FIELDS, assemble, face_names
from core.domain.voice import VoiceInfo
from higgs_tts.v1 import speech_pb2 as pb

PCM_S16LE = pb.AUDIO_ENCODING_PCM_S16LE
PCM_F32LE = pb.AUDIO_ENCODING_PCM_F32LE

_FORMATS = {
    pb.OUTPUT_FORMAT_UNSPECIFIED: OutputFormat.WAV,
    pb.OUTPUT_FORMAT_WAV: OutputFormat.WAV,
    pb.OUTPUT_FORMAT_FLAC: OutputFormat.FLAC,
    pb.OUTPUT_FORMAT_OGG: OutputFormat.OGG,
    pb.OUTPUT_FORMAT_MP3: OutputFormat.MP3,
}
_FORMAT_ENUMS = {v: k for k, v in _FORMATS.items() if k != pb.OUTPUT_FORMAT_UNSPECIFIED}
_CHUNK_METHODS = {
    pb.CHUNK_METHOD_UNSPECIFIED: ChunkMethod.AUTO,
    pb.CHUNK_METHOD_AUTO: ChunkMethod.AUTO,
    pb.CHUNK_METHOD_NONE: ChunkMethod.NONE,
    pb.CHUNK_METHOD_WORD: ChunkMethod.WORD,
    pb.CHUNK_METHOD_SPEAKER: ChunkMethod.SPEAKER,
}
_CHUNK_METHOD_ENUMS = {v: k for k, v in _CHUNK_METHODS.items() if k != pb.CHUNK_METHOD_UNSPECIFIED}
_ENCODINGS = {pb.AUDIO_ENCODING_UNSPECIFIED: PCM_S16LE, PCM_S16LE: PCM_S16LE, PCM_F32LE: PCM_F32LE}


# a text field that is not valid UTF-8 -> the code of the domain field it would have filled
_TEXT_FIELD_CODES = {
    "text": ErrorCode.INVALID_TRANSCRIPT,
    "scene_prompt": ErrorCode.INVALID_SCENE_PROMPT,
    "voices.name": ErrorCode.INVALID_VOICE_NAME,
    "voices.reference.name": ErrorCode.INVALID_VOICE_NAME,
    "voices.reference.transcript": ErrorCode.INVALID_REFERENCE_AUDIO,
    "output.s3_bucket": ErrorCode.INVALID_S3_BUCKET,
    "output.s3_key": ErrorCode.INVALID_S3_KEY,
    "request_id": ErrorCode.INVALID_REQUEST_ID,
}


class Undecodable:
    """A request whose bytes protobuf refused; `error` says which field and why."""

    def __init__(self, error: DomainError) -> None:
        self.error = error


def parse_speech_request(data: bytes) -> pb.SpeechRequest | Undecodable:
    """The request deserializer: protobuf refuses a string field that is not valid UTF-8 (a
    lone surrogate, say), and gRPC would answer INTERNAL "Exception deserializing request!".
    Such a request is refused like any bad value instead: INVALID_ARGUMENT with the field's
    own stable code."""
    try:
        return pb.SpeechRequest.FromString(data)
    except DecodeError:
        path = _first_invalid_text(data, pb.SpeechRequest.DESCRIPTOR)
        if path is None:
            return Undecodable(validation_error(
                ErrorCode.INVALID_INPUT, "the request is not a valid SpeechRequest message",
                field="request", constraint="protobuf"))
        name = ".".join(path)
        return Undecodable(validation_error(
            _TEXT_FIELD_CODES.get(name, ErrorCode.INVALID_INPUT), f"{name} is not valid Unicode text (UTF-8)",
            field=name, constraint="valid_unicode"))


def parse_text_input(data: bytes) -> pb.TextInput | Undecodable:
    """SpeakText's deserializer, as `parse_speech_request`: a piece of text (or a config field)
    that is not valid UTF-8 is a bad value with its field's code, not gRPC's INTERNAL."""
    try:
        return pb.TextInput.FromString(data)
    except DecodeError:
        path = _first_invalid_text(data, pb.TextInput.DESCRIPTOR)
        if path is None:
            return Undecodable(validation_error(ErrorCode.INVALID_INPUT, "not a valid TextInput message",
                                                field="input", constraint="protobuf"))
        name = ".".join(path)
        inner = ".".join(path[1:]) if path[0] == "config" else ""
        code = ErrorCode.INVALID_TRANSCRIPT if name == "text" else _TEXT_FIELD_CODES.get(inner, ErrorCode.INVALID_INPUT)
        return Undecodable(validation_error(code, f"{name} is not valid Unicode text (UTF-8)", field=name,
                                            constraint="valid_unicode"))


def _first_invalid_text(data: bytes, descriptor, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """Walks the wire format: the path of the first string field holding invalid UTF-8."""
    i = 0
    try:
        while i < len(data):
            key, i = _varint(data, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _varint(data, i)
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
            elif wire == 2:
                size, i = _varint(data, i)
                chunk, i = data[i:i + size], i + size
                field = descriptor.fields_by_number.get(number)
                if field is None:
                    continue
                if field.type == field.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return path + (field.name,)
                elif field.type == field.TYPE_MESSAGE:
                    inner = _first_invalid_text(chunk, field.message_type, path + (field.name,))
                    if inner is not None:
                        return inner
            else:
                return None
    except IndexError:
        return None
    return None


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80 or shift > 63:
            return value, i
        shift += 7


_NAMES = face_names("grpc")  # an error names the message's field: `sampling.top_k`, `output.s3_key`
# the message's enum fields -> the domain's values (a value not here goes to the domain as it is,
# which refuses it with the field's own message)
_ENUM_VALUES: dict[str, dict[int, Any]] = {"chunking.method": _CHUNK_METHODS, "output_format": _FORMATS,
                                           "verification.mode": VERIFY_MODES, "timestamps": TIMESTAMPS}


def request_from_message(message: pb.SpeechRequest) -> SpeechRequest:
    """Raises DomainError (validation_error) for anything the domain would refuse. A field is
    given when the message has it (proto3 `optional`, a submessage's field) or, for a plain
    scalar, when it is not its zero value; the text is always given."""
    values: dict[str, Any] = {}
    for f in FIELDS:
        path = f.on("grpc")
        if path is None:
            continue
        *parents, leaf = path.split(".")
        holder = message
        for parent in parents:
            holder = getattr(holder, parent)
        descriptor = holder.DESCRIPTOR.fields_by_name[leaf]
        value = getattr(holder, leaf)
        if f.required or (holder.HasField(leaf) if descriptor.has_presence else value != descriptor.default_value):
            values[f.name] = _ENUM_VALUES[path].get(value, value) if path in _ENUM_VALUES else value
    voices = tuple(_voice(v, i) for i, v in enumerate(message.voices))
    return assemble(values, voices, _NAMES)


def encoding_of(message: pb.SpeechRequest) -> int:
    try:
        return _ENCODINGS[message.encoding]
    except KeyError:
        raise validation_error(ErrorCode.INVALID_INPUT, "unknown audio encoding", field="encoding",
                               constraint="enum", actual=message.encoding) from None


def _voice(voice: pb.Voice, index: int) -> NamedVoice | InlineVoice:
    source = voice.WhichOneof("source")
    if source == "name":
        return NamedVoice(voice.name)
    if source == "reference":
        ref = voice.reference
        try:
            return InlineVoice(ref.audio, ref.transcript, ref.name or "inline")
        except DomainError as error:  # named as the message names them
            prefix = f"voices[{index}].reference."
            raise error.renamed({"ref_audio_base64": prefix + "audio", "ref_audio_transcript": prefix + "transcript",
                                 "name": prefix + "name"}) from None
    raise validation_error(ErrorCode.INVALID_VOICE_NAME, "a voice needs a name or reference audio",
                           field=f"voices[{index}]", constraint="one_of=name,reference")


def message_from_request(
    request: SpeechRequest, encoding: int = PCM_S16LE, omit_audio: bool = False
) -> pb.SpeechRequest:
    """The inverse of request_from_message, for clients."""
    s, c = request.sampling, request.chunking
    sampling = {f: getattr(s, f) for f in SAMPLING_FIELDS if getattr(s, f) is not None}
    voices = [
        pb.Voice(reference=pb.ReferenceAudio(audio=v.audio, transcript=v.transcript, name=v.name))
        if isinstance(v, InlineVoice)
        else pb.Voice(name=v.name)
        for v in request.voices
    ]
    output = request.output
    return pb.SpeechRequest(
        text=request.text,
        voices=voices,
        scene_prompt=request.scene_prompt or "",
        sampling=pb.Sampling(**sampling),
        chunking=pb.Chunking(
            method=_CHUNK_METHOD_ENUMS[c.method], max_word_num=c.max_word_num, max_num_turns=c.max_num_turns
        ),
        output=(pb.OutputTarget(s3_bucket=output.bucket or "", s3_key=output.key or "", overwrite=output.overwrite)
                if output else None),
        output_format=_FORMAT_ENUMS[request.output_format],
        encoding=encoding,
        request_id=request.request_id,
        speed=request.speed,
        omit_audio=omit_audio,
        **message_fields(request),
    )


def audio_bytes(samples: array, encoding: int) -> bytes:
    """Float32 samples -> little-endian bytes in the asked encoding. PCM16 rounds exactly as the
    WAV encoder does (scale by 32767, truncate, clip to +-32767), so streamed chunks add up to
    the same samples as the whole file."""
    x = np.frombuffer(samples, dtype=np.float32)
    if encoding == PCM_F32LE:
        return x.astype("<f4", copy=False).tobytes()
    clipped = np.clip(np.nan_to_num(x.astype(np.float64), nan=-1.0), -1.0, 1.0)
    return np.trunc(clipped * 32767.0).astype("<i2").tobytes()


def event_message(event: SpeechEvent, encoding: int) -> pb.SpeechEvent:
    """One domain event as a stream message (SpeechFailed is a status, not a message)."""
    if isinstance(event, AudioChunk):
        return pb.SpeechEvent(
            audio=pb.AudioChunk(
                sequence=event.sequence,
                frame_index=event.frame_index,
                num_samples=len(event.samples),
                data=audio_bytes(event.samples, encoding),
            )
        )
    if isinstance(event, Progress):
        return pb.SpeechEvent(
            progress=pb.Progress(
                frames_done=event.frames_done,
                chunks_done=event.chunks_done,
                chunks_total=event.chunks_total,
            )
        )
    if isinstance(event, SpeechStarted):
        return pb.SpeechEvent(
            started=pb.Started(
                request_id=event.request_id,
                sample_rate=event.sample_rate,
                channels=event.channels,
                encoding=encoding,
                voices=list(event.voices),
            )
        )
    if isinstance(event, ChunkVerified):
        return verified_message(event)
    if isinstance(event, AudioStored):
        return pb.SpeechEvent(stored=stored_message(event))
    if isinstance(event, SpeechCompleted):
        return pb.SpeechEvent(completed=completed_message(event))
    raise TypeError(f"no message for {type(event).__name__}")


def stored_message(event: AudioStored) -> pb.Stored:
    return pb.Stored(
        url=event.url,
        uri=event.uri,
        bucket=event.bucket,
        key=event.key,
        bytes=event.bytes,
        etag=event.etag or "",
        record_key=event.record_key,
        captions_key=event.captions_key or "",
    )


def completed_message(event: SpeechCompleted) -> pb.Completed:
    t = event.timings
    return pb.Completed(
        request_id=event.request_id,
        duration_seconds=event.duration_seconds,
        sample_rate=event.sample_rate,
        timings=pb.Timings(
            queue=t.queue,
            load=t.load,
            prefill=t.prefill,
            decode=t.decode,
            vocode=t.vocode,
            upload=t.upload,
            first_audio=t.first_audio or 0.0,
            total=t.total,
            asr=t.asr,
        ),
        real_time_factor=event.real_time_factor,
        frames=event.frames,
        stop_reason=event.stop_reason,
        audio_url=event.audio_url or "",
        text_output=event.text_output,
        trace_id=event.metadata.get("trace_id") or "",
        metadata=_struct(event.metadata),
    )


def result_message(
    event: SpeechCompleted, stored: AudioStored | None, omit_audio: bool = False
) -> pb.SpeechResult:
    return pb.SpeechResult(
        audio=b"" if omit_audio else event.audio.data,
        format=event.audio.format,
        content_type=event.audio.content_type,
        completed=completed_message(event),
        stored=stored_message(stored) if stored else None,
    )


def voices_message(voices: list[VoiceInfo]) -> pb.ListVoicesResponse:
    return pb.ListVoicesResponse(
        voices=[
            pb.VoiceInfo(name=v.name, transcript=v.transcript, duration_seconds=v.duration_seconds)
            for v in voices
        ]
    )


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    # through JSON: the metadata may hold values a Struct cannot (paths, tuples)
    return json_format.ParseDict(json.loads(json.dumps(values, default=str)), struct_pb2.Struct())


__all__ = [
    "PCM_F32LE",
    "PCM_S16LE",
    "audio_bytes",
    "encoding_of",
    "event_message",
    "message_from_request",
    "request_from_message",
    "result_message",
    "voices_message",
]
