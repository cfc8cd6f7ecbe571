"""The AudioEncoder port with numpy and libsndfile (via `soundfile`): WAV (16-bit PCM), FLAC,
OGG Vorbis and, where the bundled libsndfile has it, MP3.

Samples become 16-bit exactly as the streamed PCM16 chunks do (`core.domain.audio.to_pcm16`:
clip, scale by 32767, truncate), so a WAV or FLAC file equals the concatenated stream."""

from __future__ import annotations

import io
from array import array

import numpy as np
import soundfile as sf

from core.domain.audio import EncodedAudio, wav_header

# format -> (libsndfile format, subtype, content type)
_FORMATS = {
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}


def pcm16(samples: array) -> np.ndarray:
    wave = np.nan_to_num(np.frombuffer(samples, dtype=np.float32).astype(np.float64), nan=-1.0)
    return np.trunc(np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2")  # as Python floats do


class SoundfileEncoder:
    def __init__(self) -> None:
        available = sf.available_formats()
        self.formats = frozenset({"wav"} | {
            name for name, (container, subtype, _) in _FORMATS.items()
            if container in available and subtype in sf.available_subtypes(container)
        })

    def encode(self, samples: array, sample_rate: int, fmt: str) -> EncodedAudio:
        if fmt not in self.formats:
            raise ValueError(f"cannot write {fmt}; available: {', '.join(sorted(self.formats))}")
        pcm = pcm16(samples)
        if fmt == "wav":
            data = pcm.tobytes()
            return EncodedAudio(wav_header(len(data), sample_rate) + data, "wav", "audio/wav")
        container, subtype, content_type = _FORMATS[fmt]
        buffer = io.BytesIO()
        if subtype == "PCM_16":
            sf.write(buffer, pcm, sample_rate, format=container, subtype=subtype)
        else:  # lossy codecs take the float signal
            sf.write(buffer, np.clip(np.frombuffer(samples, dtype=np.float32), -1, 1), sample_rate,
                     format=container, subtype=subtype)
        return EncodedAudio(buffer.getvalue(), fmt, content_type)
