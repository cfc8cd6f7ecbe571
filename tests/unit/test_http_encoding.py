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
