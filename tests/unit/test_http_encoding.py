"""The HTTP face's encoder: a streamed WAV carries a stream's maximum sizes; sealed, the sizes
it holds, for every length from none to many chunks."""

import io
import struct
import wave

import numpy as np
import pytest
import soundfile

from adapters.http.encoding import StreamEncoder, sealed_wav


@pytest.mark.parametrize("lengths", [[], [0], [1], [2, 3], [24000], [1, 0, 4799, 24000, 7], [12345] * 9])
def test_a_sealed_wav_reads_back_exactly_what_was_pushed(lengths):
    rng = np.random.default_rng(len(lengths))
    pieces = [rng.uniform(-1, 1, n).astype(np.float32) for n in lengths]
    encoder = StreamEncoder("wav", 24000)
    streamed = b"".join(encoder.push(p) for p in pieces) + encoder.finish()
    assert streamed[4:8] == streamed[40:44] == struct.pack("<I", 0xFFFFFFFF)
    sealed = sealed_wav(streamed)
    assert len(sealed) == len(streamed) == 44 + 2 * sum(lengths)
    assert struct.unpack("<I", sealed[4:8])[0] == len(sealed) - 8
    with wave.open(io.BytesIO(sealed)) as reader:
        assert reader.getnframes() == sum(lengths) and reader.getframerate() == 24000
        assert reader.readframes(reader.getnframes()) == streamed[44:]
    samples, rate = soundfile.read(io.BytesIO(sealed), dtype="int16")
    assert rate == 24000 and samples.size == sum(lengths)


def test_the_encoded_bound_is_never_below_the_samples_it_bounds():
    """Frames over 25 per second, times 24,000, in floating point lands just under a whole
    number for some counts (8348 frames: 8014079.999...): the bound rounds up. The samples are
    counted as the decoder (960 a frame) and the time-stretch (rounded) make them."""
    from core.domain.audio import FRAME_RATE, max_encoded_bytes

    for speed in (0.25, 0.5, 0.75, 1.0, 1.1, 1.5, 2.0, 3.3, 4.0):
        for frames in list(range(0, 3000)) + list(range(8000, 9000)) + [100_000, 250_001]:
            seconds = frames / FRAME_RATE / speed
            samples = frames * 960 if speed == 1.0 else int(round(frames * 960 / speed))
            assert max_encoded_bytes(seconds, 24000, "wav") >= 44 + 2 * samples, (frames, speed)
            assert max_encoded_bytes(seconds, 24000, "flac") >= 44 + 2 * samples
