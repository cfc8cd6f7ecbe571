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
from typing import Any, Mapping

from core.domain.errors import DomainError, ErrorCode, ErrorType, safe_text, validation_error
from core.domain.events import AudioStored, SpeechCompleted
from core.domain.request import (
    SAMPLING_FIELDS,
    Chunking,
    InlineVoice,
    OutputTarget,
    Sampling,
    SpeechRequest,
    parse_voice_list,
)
from core.domain.verification import Verification

# the design's GenerationRequest
REQUEST_FIELDS = (
    "transcript",
    "ref_audio",
    "scene_prompt",
    "temperature",
    "top_k",
    "top_p",
    "max_new_tokens",
    "chunk_method",
    "chunk_max_word_num",
    "chunk_max_num_turns",
    "ras_win_len",
    "ras_win_max_num_repeat",
    "seed",
    "s3_bucket",
    "s3_key",
)
# this service's additions
EXTRA_FIELDS = (
    "ref_audio_base64",  # a reference clip sent with the job (WAV/FLAC/OGG bytes, base64)
    "ref_audio_transcript",  # what is said in it
    "output_format",  # wav (default) | flac | ogg | mp3
    "overwrite",  # replace an object already at s3_key (default: refuse with OBJECT_EXISTS)
    "traceparent",  # W3C trace context of the caller: the job's spans join that trace
    "speed",  # the pace, 0.25 to 4.0 (time-stretched, pitch kept)
    "verify",  # the ASR pass: true/"on", "report", false/"off" (default: HIGGS_VERIFY)
    "max_wer",  # 0..1: a chunk above it is generated again (default: HIGGS_MAX_WER)
    "max_attempts",  # 1..5 generations of one chunk (default: HIGGS_VERIFY_ATTEMPTS)
    "timestamps",  # "word": metadata.words, and captions next to stored audio
)
FIELDS = frozenset(REQUEST_FIELDS + EXTRA_FIELDS)

_STRINGS = {
    "transcript": ErrorCode.INVALID_TRANSCRIPT,
    "ref_audio": ErrorCode.INVALID_VOICE_NAME,
    "scene_prompt": ErrorCode.INVALID_SCENE_PROMPT,
    "chunk_method": ErrorCode.INVALID_CHUNKING,
    "s3_bucket": ErrorCode.INVALID_S3_BUCKET,
    "s3_key": ErrorCode.INVALID_S3_KEY,
    "ref_audio_base64": ErrorCode.INVALID_REFERENCE_AUDIO,
    "ref_audio_transcript": ErrorCode.INVALID_REFERENCE_AUDIO,
    "output_format": ErrorCode.INVALID_OUTPUT_FORMAT,
}
log = logging.getLogger(__name__)
# W3C trace context, version 00 (55 characters); anything else is ignored with a warning
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_B64_WHITESPACE = re.compile(rb"[ \t\r\n]+")


def request_from_input(job_input: Any, request_id: str | None = None) -> SpeechRequest:
    """Raises DomainError (validation_error) naming what is wrong. JSON null means "not given"."""
    if not isinstance(job_input, Mapping):
        raise validation_error(
            ErrorCode.INVALID_INPUT, "input must be a JSON object with at least a transcript",
            field="input", constraint="type=object", actual_type=type(job_input).__name__,
        )
    unknown = sorted(str(k) for k in job_input if k not in FIELDS)
    if unknown:
        shown = ", ".join(repr(safe_text(name, 40)) for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise validation_error(
            ErrorCode.UNKNOWN_FIELD, f"unknown input field(s): {shown}{more}",
            field=unknown[0], constraint="known_field", actual=unknown, allowed=sorted(FIELDS),
        )
    given = {k: v for k, v in job_input.items() if v is not None}
    for name, code in _STRINGS.items():
        if name in given and not isinstance(given[name], str):
            raise validation_error(code, f"{name} must be a string", field=name, constraint="type=string",
                                   actual_type=type(given[name]).__name__)
    if "transcript" not in given:
        raise validation_error(ErrorCode.INVALID_TRANSCRIPT, "transcript is required", field="transcript",
                               constraint="required")

    voices: tuple = parse_voice_list(given["ref_audio"]) if given.get("ref_audio") else ()  # "": no voice
    if "ref_audio_base64" in given:
        voices = voices + (InlineVoice(_b64(given["ref_audio_base64"]),
                                       given.get("ref_audio_transcript", "")),)
    elif "ref_audio_transcript" in given:
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO,
                               "ref_audio_transcript was given without ref_audio_base64",
                               field="ref_audio_transcript", constraint="requires=ref_audio_base64")

    output = None
    if "s3_bucket" in given or "s3_key" in given or "overwrite" in given:
        output = OutputTarget(given.get("s3_bucket") or None, given.get("s3_key") or None,
                              given.get("overwrite", False))
    defaults = Chunking()
    return SpeechRequest(
        text=given["transcript"],
        voices=voices,
        scene_prompt=given.get("scene_prompt") or None,
        sampling=Sampling(**{f: given[f] for f in SAMPLING_FIELDS if f in given}),
        chunking=Chunking(
            given.get("chunk_method", defaults.method),
            given.get("chunk_max_word_num", defaults.max_word_num),
            given.get("chunk_max_num_turns", defaults.max_num_turns),
        ),
        output=output,
        output_format=given.get("output_format", "wav"),
        **({"request_id": request_id} if request_id else {}),
        **({"speed": given["speed"]} if "speed" in given else {}),
        verification=Verification(given.get("verify"), given.get("max_wer"), given.get("max_attempts")),
        timestamps=given.get("timestamps", "none"),
    )


def traceparent_of(job_input: Any) -> str | None:
    """The caller's W3C traceparent when it is a valid one; anything else is ignored (with a
    warning), never an error: tracing must not fail a request."""
    value = job_input.get("traceparent") if isinstance(job_input, Mapping) else None
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
