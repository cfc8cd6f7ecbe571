import io
import math
from array import array

import numpy as np
import pytest
import soundfile as sf

from adapters.soundfile import SoundfileEncoder
from core.domain.audio import WavEncoder


def tone(seconds=0.5, rate=24000):
    return array("f", (0.5 * math.sin(2 * math.pi * 440 * i / rate) for i in range(int(seconds * rate))))


@pytest.mark.parametrize("fmt, tolerance", [("wav", 1e-4), ("flac", 1e-4), ("ogg", 0.1), ("mp3", 0.2)])
def test_each_format_decodes_back_to_the_tone(fmt, tolerance):
    encoder = SoundfileEncoder()
    assert fmt in encoder.formats  # the libsndfile bundled with the soundfile wheel has them all
    samples = tone()
    encoded = encoder.encode(samples, 24000, fmt)
    assert encoded.format == fmt and encoded.content_type.startswith("audio/")
    decoded, rate = sf.read(io.BytesIO(encoded.data), dtype="float32")
    assert rate == 24000
    if fmt in ("wav", "flac"):  # lossless (16-bit)
        assert len(decoded) == len(samples)
        assert np.abs(decoded - np.frombuffer(samples, dtype=np.float32)).max() < tolerance
    else:  # lossy: same length within the codec's padding, same loudness
        assert abs(len(decoded) - len(samples)) < 2400
        assert abs(np.sqrt(np.mean(decoded ** 2)) - 0.5 / math.sqrt(2)) < tolerance


def test_wav_and_flac_hold_exactly_the_streamed_pcm16():
    samples = tone(0.1)
    samples.extend([1.5, -1.5, 0.99999, -0.5])  # clipping and truncation as in the stream
    wav = SoundfileEncoder().encode(samples, 24000, "wav").data
    assert wav == WavEncoder().encode(samples, 24000, "wav").data
    flac = SoundfileEncoder().encode(samples, 24000, "flac").data
    decoded, _ = sf.read(io.BytesIO(flac), dtype="int16")
    assert decoded.tobytes() == wav[44:]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="cannot write aiff"):
        SoundfileEncoder().encode(tone(0.01), 24000, "aiff")
