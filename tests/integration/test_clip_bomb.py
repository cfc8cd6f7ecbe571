"""A decompression bomb handed in as a reference clip, read in a process of its own so its
memory can be measured: refused from its header (or at the length limit), never decoded whole."""

import pytest

BOMB = r"""
import io, resource, sys, time
import numpy as np, soundfile as sf
from boson_multimodal.codec import AudioInputError, read_clip

fmt, minutes = sys.argv[1], int(sys.argv[2])
buf = io.BytesIO()
with sf.SoundFile(buf, "w", samplerate=24000, channels=1, format=fmt) as f:
    block = np.zeros(24000 * 60, dtype=np.float32)
    for _ in range(minutes):
        f.write(block)
data = buf.getvalue()
del buf, block
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    read_clip(data)
    print("accepted")
except AudioInputError as exc:
    print("refused", exc)
print(len(data), time.perf_counter() - started, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_a_clip_that_decompresses_into_an_hour_is_refused_without_decoding_it(fmt):
    """An hour of silence is a few hundred KB compressed and 345 MB decoded: it is refused from
    its header (or after the limit), quickly, with memory growing by far less than 100 MB."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", BOMB, fmt, "60"], capture_output=True, text=True, timeout=120,
                         check=True).stdout.splitlines()
    assert out[0].startswith("refused") and "limit is 30s" in out[0]
    size, seconds, grown_mb = out[1].split()
    assert int(size) < 2_000_000 and float(seconds) < 2.0 and float(grown_mb) < 100, out
