"""What a voice upload must be: a WAV, FLAC or OGG clip that decodes, 0.2 to 30 s long (read
from its header, so a clip claiming an hour is refused without decoding it)."""

from __future__ import annotations

import io

from core.domain.errors import ErrorCode, validation_error
from core.domain.request import MAX_REFERENCE_AUDIO_BYTES

MAX_CLIP_SECONDS = 30.0
MIN_CLIP_SECONDS = 0.2  # the engine refuses a shorter reference clip: it would fail every request
SUFFIXES = {"WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg"}


def inspect_clip(data: bytes) -> tuple[str, float]:
    """(file suffix, duration in seconds) of a reference clip, or a validation error."""
    import soundfile

    if len(data) > MAX_REFERENCE_AUDIO_BYTES:
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO,
                               f"a clip is at most {MAX_REFERENCE_AUDIO_BYTES} bytes",
                               field="file", constraint=f"max_bytes={MAX_REFERENCE_AUDIO_BYTES}",
                               actual_bytes=len(data))
    try:
        info = soundfile.info(io.BytesIO(data))
    except Exception:
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, "the clip is not audio this server reads "
                               "(WAV, FLAC or OGG)", field="file", constraint="format=wav|flac|ogg") from None
    suffix = SUFFIXES.get(info.format)
    if suffix is None:
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, f"{info.format} clips are not accepted; "
                               "send WAV, FLAC or OGG", field="file", constraint="format=wav|flac|ogg")
    if not info.frames or info.samplerate <= 0:
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, "the clip holds no audio", field="file",
                               constraint="min_seconds>0")
    seconds = info.frames / info.samplerate
    if seconds < MIN_CLIP_SECONDS:
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, f"a voice clip is at least {MIN_CLIP_SECONDS:g} s "
                               f"long (this one is {seconds:.2f} s)", field="file",
                               constraint=f"min_seconds={MIN_CLIP_SECONDS:g}", actual_seconds=round(seconds, 3))
    if seconds > MAX_CLIP_SECONDS:
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, f"a voice clip is at most {MAX_CLIP_SECONDS:.0f} s "
                               f"long (this one says {seconds:.0f} s)", field="file",
                               constraint=f"max_seconds={MAX_CLIP_SECONDS:.0f}", actual_seconds=round(seconds, 1))
    return suffix, round(seconds, 3)
