"""Audio containers for HTTP responses, written while the audio is generated: each chunk of
samples in, the bytes that are ready out. `pcm` is raw 16-bit little-endian; `wav` a header
whose sizes say "unknown length" (as streaming servers send it) and then PCM; `mp3`, `opus`
(in Ogg), `aac` (ADTS) and `flac` go through FFmpeg's encoders (PyAV)."""

from __future__ import annotations

import io
import struct
from array import array

import numpy as np

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
FORMATS = tuple(CONTENT_TYPES)
# format -> (FFmpeg codec, container)
_CODECS = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg"), "aac": ("aac", "adts"), "flac": ("flac", "flac")}


def pcm16(samples: array | np.ndarray) -> bytes:
    """As core's `to_pcm16` (every PCM16 in the project is the same numbers): in double, scale by
    32767, truncate, clip to +-32767; NaN is -32767."""
    data = np.nan_to_num(np.asarray(samples, dtype=np.float32).astype(np.float64), nan=-1.0)
    return np.trunc(np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int) -> bytes:
    """A PCM16 mono WAV header with its sizes at their maximum: players read to the end."""
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
            sample_rate * 2, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF))


def sealed_wav(data: bytes) -> bytes:
    """A streamed WAV (`streaming_wav_header` then PCM16) with its RIFF and data sizes set to
    what it holds."""
    return data[:4] + struct.pack("<I", len(data) - 8) + data[8:40] + struct.pack("<I", len(data) - 44) + data[44:]


class StreamEncoder:
    def __init__(self, fmt: str, sample_rate: int) -> None:
        if fmt not in CONTENT_TYPES:
            raise ValueError(f"unknown format {fmt!r}")
        self.fmt, self.sample_rate = fmt, sample_rate
        self.content_type = CONTENT_TYPES[fmt]
        self._started = False
        if fmt in _CODECS:
            import av

            codec, container = _CODECS[fmt]
            self._buffer = io.BytesIO()
            options = {"page_duration": "100000"} if container == "ogg" else {}  # Ogg pages every 0.1 s
            self._container = av.open(self._buffer, mode="w", format=container, options=options)
            self._stream = self._container.add_stream(codec, rate=sample_rate)
            self._stream.layout = "mono"
            self._sent = 0

    def push(self, samples: array | np.ndarray) -> bytes:
        """The bytes ready after these samples (float32 mono at the encoder's rate)."""
        head = b""
        if not self._started:
            self._started = True
            head = streaming_wav_header(self.sample_rate) if self.fmt == "wav" else b""
        if self.fmt in ("wav", "pcm"):
            return head + pcm16(samples)
        data = np.ascontiguousarray(np.asarray(samples, dtype=np.float32))
        if data.size:
            self._encode(data)
        return head + self._drain()

    def finish(self) -> bytes:
        if self.fmt in ("wav", "pcm"):
            return b"" if self._started else self.push(np.zeros(0, dtype=np.float32))
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._drain()

    def _encode(self, data: np.ndarray) -> None:
        import av

        frame = av.AudioFrame.from_ndarray(data[None, :], format="flt", layout="mono")
        frame.sample_rate = self.sample_rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _drain(self) -> bytes:
        data = self._buffer.getvalue()[self._sent:]
        self._sent += len(data)
        return data
