"""One fact, four places that may not share code (the dependency rule keeps adapters apart):
float samples to 16-bit PCM. Core's `to_pcm16` is the definition; the gRPC stream, the HTTP
encoder and the soundfile encoder give the same numbers for every value, hostile ones included."""

import math
import sys
from array import array

import numpy as np

from adapters.grpc.messages import PCM_S16LE, audio_bytes
from adapters.http.encoding import pcm16 as http_pcm16
from adapters.soundfile.encoder import pcm16 as soundfile_pcm16
from core.domain.audio import to_pcm16


def samples() -> array:
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 1.0, -1.0, 0.99999994, -0.99999994, 1.5, -7.0, 1e-9, -1e-9, 3.0517578e-05,
               math.nan, math.inf, -math.inf, 0.5, -0.5, 1 / 32767, -1 / 32767]
    values = np.concatenate([np.array(special, dtype=np.float32), rng.uniform(-1.2, 1.2, 20000).astype(np.float32)])
    return array("f", values.tobytes()) if sys.byteorder == "little" else array("f", values.tolist())


def test_every_pcm16_conversion_equals_cores():
    x = samples()
    expected = np.array(to_pcm16(x), dtype="<i2")
    assert np.array_equal(np.frombuffer(audio_bytes(x, PCM_S16LE), dtype="<i2"), expected)
    assert np.array_equal(np.frombuffer(http_pcm16(x), dtype="<i2"), expected)
    assert np.array_equal(soundfile_pcm16(x), expected)
