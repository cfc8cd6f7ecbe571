"""A RunPod job's `input` dict -> SpeechRequest, and the domain's outcome -> the job's output.

Input: the design's GenerationRequest fields, plus inline reference audio and an output
format. Output: the design's GenerationResponse. Every check on values is the domain's own;
this module checks the JSON shape (unknown fields, types the domain cannot see) and moves fields.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping

from core.domain.errors import DomainError, ErrorCode, ErrorType, safe_text, validation_error
from core.domain.events import AudioStored, SpeechCompleted
from core.domain.request import InlineVoice, SpeechRequest, parse_voice_list
from core.domain.request_fields import assemble, face_names, read_json

# the design's GenerationRequest: every one is a line of the request's field table
# (core.domain.request_fields) but `ref_audio`, the voices
REQUEST_FIELDS = (
    "transcript", "ref_audio", "scene_prompt", "temperature", "top_k", "top_p", "max_new_tokens", "chunk_method",
    "chunk_max_word_num", "chunk_max_num_turns", "ras_win_len", "ras_win_max_num_repeat", "seed", "s3_bucket",
    "s3_key",
)
# what this face reads itself, besides the table's fields
OWN_FIELDS = {
    "ref_audio": ErrorCode.INVALID_VOICE_NAME,  # voice names, comma-separated, one per [SPEAKERn]
    "ref_audio_base64": ErrorCode.INVALID_REFERENCE_AUDIO,  # a reference clip (WAV/FLAC/OGG bytes, base64)
    "ref_audio_transcript": ErrorCode.INVALID_REFERENCE_AUDIO,  # what is said in it
    "traceparent": None,  # W3C trace context of the caller: the job's spans join that trace
}
NAMES = face_names("runpod")  # the table's fields, as this face names them
FIELDS = frozenset(OWN_FIELDS) | frozenset(NAMES.values())
log = logging.getLogger(__name__)
# W3C trace context, version 00 (55 characters); anything else is ignored with a warning
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_B64_WHITESPACE = re.compile(rb"[ \t\r\n]+")


@dataclass(frozen=True)
class JobInput:
    """A job's input, read once: the request and the caller's trace context."""

    request: SpeechRequest
    traceparent: str | None = None


def read_input(job_input: Any, request_id: str | None = None) -> JobInput:
    """Raises DomainError (validation_error) naming what is wrong. JSON null means "not given"."""
    if not isinstance(job_input, Mapping):
        raise validation_error(
            ErrorCode.INVALID_INPUT, "input must be a JSON object with at least a transcript",
            field="input", constraint="type=object", actual_type=type(job_input).__name__,
        )
    values, own = read_json(job_input, "runpod", frozenset(OWN_FIELDS), what="input field")
    for name, code in OWN_FIELDS.items():
        if code is not None and name in own and not isinstance(own[name], str):
            raise validation_error(code, f"{name} must be a string", field=name, constraint="type=string",
                                   actual_type=type(own[name]).__name__)
    voices: tuple = parse_voice_list(own["ref_audio"]) if own.get("ref_audio") else ()  # "": no voice
    if "ref_audio_base64" in own:
        voices = voices + (InlineVoice(_b64(own["ref_audio_base64"]), own.get("ref_audio_transcript", "")),)
    elif "ref_audio_transcript" in own:
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO,
                               "ref_audio_transcript was given without ref_audio_base64",
                               field="ref_audio_transcript", constraint="requires=ref_audio_base64")
    request = assemble(values, voices, NAMES, **({"request_id": request_id} if request_id else {}))
    return JobInput(request, _traceparent(own.get("traceparent")))


def request_from_input(job_input: Any, request_id: str | None = None) -> SpeechRequest:
    return read_input(job_input, request_id).request


def _traceparent(value: Any) -> str | None:
    """The caller's W3C traceparent when it is a valid one; anything else is ignored (with a
    warning), never an error: tracing must not fail a request."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 55 and _TRACEPARENT.fullmatch(value):
        return value
    log.warning("ignoring an invalid traceparent (%s)", safe_text(repr(value) if not isinstance(value, str)
                                                                 else value, 60))
    return None


def _b64(text: str) -> bytes:
    """Standard base64, as one line or as MIME/`base64` output with line breaks."""
    try:
        return base64.b64decode(_B64_WHITESPACE.sub(b"", text.encode("ascii")), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, "ref_audio_base64 is not valid base64",
                               field="ref_audio_base64", constraint="base64") from None


def success_response(
    completed: SpeechCompleted,
    stored: AudioStored | None,
    inline_limit: int,
    include_audio: bool = True,
) -> dict[str, Any]:
    """The GenerationResponse. Without a stored copy the audio travels inline (base64) when it
    fits under `inline_limit` bytes; a larger one is refused with a clear error rather than
    breaking the platform's payload limit. `include_audio=False` (streaming mode, where the
    audio already went out in chunks) never inlines it."""
    metadata = dict(completed.metadata)
    metadata.update(
        real_time_factor=round(completed.real_time_factor, 4),
        frames=completed.frames,
        stop_reason=completed.stop_reason,
        audio_format=completed.audio.format,
        audio_bytes=len(completed.audio.data),
    )
    response: dict[str, Any] = {
        "success": True,
        "audio_url": stored.url if stored else None,
        "duration_seconds": round(completed.duration_seconds, 4),
        "sample_rate": completed.sample_rate,
        "text_output": completed.text_output,
        "metadata": metadata,
        "error": None,
    }
    if stored is not None:
        metadata.update(audio_delivery="url", s3_bucket=stored.bucket, s3_key=stored.key,
                        record_key=stored.record_key,
                        **({"captions_key": stored.captions_key} if stored.captions_key else {}))
    elif not include_audio:
        metadata["audio_delivery"] = "stream"
    else:
        size = len(completed.audio.data)
        if size > inline_limit:
            raise DomainError(  # the audio was generated: a system limit, not a validation error
                ErrorType.SYSTEM,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"the audio ({completed.duration_seconds:.1f} s, {size} bytes) is over the {inline_limit}-byte "
                "limit for returning it inline (RunPod caps a job's payload); give s3_bucket (or set "
                "S3_BUCKET) to receive a URL, or use the streaming worker",
                {"audio_bytes": size, "inline_limit_bytes": inline_limit,
                 "duration_seconds": round(completed.duration_seconds, 3), "frames": completed.frames,
                 "stop_reason": completed.stop_reason,
                 "chunk_stop_reasons": completed.metadata.get("chunk_stop_reasons")},
            )
        response["audio_base64"] = base64.b64encode(completed.audio.data).decode("ascii")
        metadata.update(audio_delivery="inline", inline_limit_bytes=inline_limit)
    return JobOutput(response)


def error_response(error: DomainError) -> dict[str, Any]:
    return JobOutput({"success": False, "error": error.to_dict()})


class JobOutput(dict):
    """A job's output, kept whole through the runpod SDK.

    The SDK moves a top-level "error" key out of a handler's dict (run_job pops it; the
    production stream loop reads it with .get) and marks the job FAILED: the caller then loses
    `success` and `details`, and the local API answers 500 when that error is a dict. A failed
    request here is a completed job whose output is the design's error response, so the SDK
    is shown no "error" key: it does not look inside, JSON serialisation sees every key.
    """

    def pop(self, key, *default):
        if key == "error":
            return default[0] if default else None
        return super().pop(key, *default)

    def get(self, key, default=None):
        if key == "error":
            return default
        return super().get(key, default)
