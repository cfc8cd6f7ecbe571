"""Where finished audio goes and what is written beside it: object keys, the object's metadata
and the JSON event record that consumers subscribe to. Pure: the service layer does the I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.domain.audio import EncodedAudio
from core.domain.events import Timings
from core.domain.request import RECORD_SUFFIX, InlineVoice, SpeechRequest

_EXTENSIONS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3"}


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    url: str  # fetchable by the caller (presigned for S3)
    uri: str  # canonical, e.g. s3://bucket/key or file:///path
    size: int
    etag: str | None = None


@dataclass(frozen=True)
class SpeechSummary:
    """One finished request, as the response and its record describe it."""

    request_id: str
    duration_seconds: float
    sample_rate: int
    frames: int
    stop_reason: str
    real_time_factor: float
    timings: Timings
    metadata: dict[str, Any]  # request_id, trace_id, voices, model, the engine's work, cache

    @property
    def model(self) -> dict[str, Any]:
        model: dict[str, Any] = self.metadata.get("model") or {}
        return model


def default_key(prefix: str, request_id: str, fmt: str, now: datetime) -> str:
    """`{prefix}/{yyyy}/{mm}/{dd}/{request_id}.{ext}`"""
    stem = f"{now:%Y}/{now:%m}/{now:%d}/{request_id}.{_EXTENSIONS[fmt]}"
    return f"{prefix.strip('/')}/{stem}" if prefix.strip("/") else stem


def record_key(audio_key: str) -> str:
    return f"{audio_key}{RECORD_SUFFIX}"


def captions_key(audio_key: str) -> str:
    """The WebVTT captions written next to the audio when the request asked for word timings."""
    return f"{audio_key}.vtt"


def object_metadata(request: SpeechRequest, summary: SpeechSummary) -> dict[str, str]:
    """The audio object's user metadata (S3 x-amz-meta-*)."""
    return {
        "request-id": request.request_id,
        "voice": ",".join(request.voice_names) or "none",
        "duration-seconds": f"{summary.duration_seconds:.3f}",
        "sample-rate": str(summary.sample_rate),
        "model-revision": str(summary.model.get("revision") or "unknown"),
        "trace-id": summary.metadata.get("trace_id") or "",
    }


def event_record(request: SpeechRequest, summary: SpeechSummary, stored: StoredObject, audio: EncodedAudio,
                 created_at: datetime, captions_key: str | None = None) -> dict[str, Any]:
    """The `speech.completed` record written next to the audio."""
    record = {
        "event": "speech.completed",
        "created_at": created_at.isoformat(),
        "request_id": request.request_id,
        "trace_id": summary.metadata.get("trace_id"),
        "request": request_record(request),
        "audio": {
            "bucket": stored.bucket,
            "key": stored.key,
            "uri": stored.uri,
            "bytes": stored.size,
            "etag": stored.etag,
            "format": audio.format,
            "content_type": audio.content_type,
            "duration_seconds": round(summary.duration_seconds, 4),
            "sample_rate": summary.sample_rate,
        },
        "frames": summary.frames,
        "stop_reason": summary.stop_reason,
        "real_time_factor": round(summary.real_time_factor, 4),
        "timings": summary.timings.to_dict(),
        "model": summary.model,
    }
    for key in ("verification", "words"):  # the ASR pass, when the request asked for it
        if key in summary.metadata:
            record[key] = summary.metadata[key]
    if captions_key is not None:
        record["captions"] = {"key": captions_key, "format": "vtt"}
    if "cache" in summary.metadata:  # served from the result cache: the request whose audio this is
        record["cache"] = {"result": summary.metadata["cache"],
                           "original_request_id": summary.metadata.get("original_request_id")}
    return record


def request_record(request: SpeechRequest) -> dict[str, Any]:
    """The request's parameters for the event record: no audio bytes, nothing secret."""
    s, c, v = request.sampling, request.chunking, request.verification
    return {
        "text": request.text,
        "voices": request.voice_names,
        "inline_voice": any(isinstance(v, InlineVoice) for v in request.voices),
        "scene_prompt": request.scene_prompt,
        "output_format": request.output_format.value,
        "sampling": {
            "temperature": s.temperature,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "max_new_tokens": s.max_new_tokens,
            "seed": s.seed,
            "ras_win_len": s.ras_win_len,
            "ras_win_max_num_repeat": s.ras_win_max_num_repeat,
        },
        "chunking": {
            "method": c.method.value,
            "max_word_num": c.max_word_num,
            "max_num_turns": c.max_num_turns,
        },
        "verify": {"mode": v.mode.value if v.mode else None, "max_wer": v.max_wer, "max_attempts": v.max_attempts},
        "timestamps": request.timestamps.value,
    }
