"""Audio as the domain sees it: mono float32 samples in an `array('f')`, and the WAV container.

The core stays free of numpy: adapters hand over `array('f')` (numpy wraps it without a copy via
`np.frombuffer`)."""

from __future__ import annotations

import math
import struct
import sys
from array import array
from dataclasses import dataclass
from typing import TypeAlias

# the one audio type of every layer from the engine's port to the encoders: float32 mono samples
# (EngineAudio, AudioChunk, the stretcher, the transcriber, the encoders)
Samples: TypeAlias = "array[float]"

SAMPLE_RATE = 24_000
FRAME_RATE = 25  # audio-token frames per second of the Higgs audio tokenizer


def samples_from_bytes(data: bytes) -> Samples:
    """Little-endian float32 bytes -> samples."""
    out = array("f")
    out.frombytes(data)
    if sys.byteorder != "little":
        out.byteswap()
    return out


def samples_to_bytes(samples: Samples) -> bytes:
    if sys.byteorder == "little":
        return samples.tobytes()
    swapped = array("f", samples)
    swapped.byteswap()
    return swapped.tobytes()


def to_pcm16(samples: Samples) -> array[int]:
    """Clip to [-1, 1] and scale to int16."""
    return array(
        "h",
        [
            int(x * 32767.0) if -1.0 < x < 1.0 else (32767 if x >= 1.0 else -32767)
            for x in samples
        ],
    )


def pcm16_bytes(samples: Samples) -> bytes:
    pcm = to_pcm16(samples)
    if sys.byteorder != "little":
        pcm.byteswap()
    return pcm.tobytes()


def wav_bytes(samples: Samples, sample_rate: int) -> bytes:
    """A 16-bit PCM mono WAV file."""
    data = pcm16_bytes(samples)
    return wav_header(len(data), sample_rate) + data


def wav_header(data_bytes: int, sample_rate: int) -> bytes:
    """The 44-byte header of a 16-bit PCM mono WAV file with `data_bytes` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


def max_encoded_bytes(seconds: float, sample_rate: int, fmt: str) -> int:
    """An upper bound of the encoded size of `seconds` of mono audio: 16-bit PCM for WAV and
    FLAC (FLAC never needs more than PCM plus framing); a quarter of it (96 kbit/s at 24 kHz)
    for the lossy formats at their default quality."""
    pcm = math.ceil(seconds * sample_rate) * 2  # up, never down: 8348 / 25 * 24000 is 8014079.999...
    return 44 + pcm if fmt in ("wav", "flac") else 4096 + pcm // 4


@dataclass(frozen=True, repr=False)
class EncodedAudio:
    data: bytes
    format: str
    content_type: str

    def __repr__(self) -> str:
        return f"EncodedAudio({self.format}, {len(self.data)} bytes)"


class WavEncoder:
    """The encoder every deployment has: 16-bit PCM WAV, standard library only."""

    formats = frozenset({"wav"})

    def encode(self, samples: Samples, sample_rate: int, fmt: str) -> EncodedAudio:
        if fmt != "wav":
            raise ValueError(f"WavEncoder cannot write {fmt}")
        return EncodedAudio(wav_bytes(samples, sample_rate), "wav", "audio/wav")
