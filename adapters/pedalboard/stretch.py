"""`speed` with Rubber Band (through pedalboard): pitch kept, formants kept.

Rubber Band here works on whole buffers, so the stream is stretched in blocks: each block is
stretched together with the input that came before it (its context), the part of the output
that belongs to the context is dropped, and the join with the previous block is crossfaded, so
block edges do not click. Every block's output is trimmed or padded so the whole output is the
input's length divided by the speed, to the sample."""

from __future__ import annotations

from array import array

import numpy as np
from pedalboard import time_stretch

BLOCK_SECONDS = 0.5  # input stretched at a time (the latency it adds at most)
CONTEXT_SECONDS = 0.25  # input before a block stretched with it
FADE_SECONDS = 0.01  # crossfade at each join


class RubberBandStretcher:
    def open(self, speed: float, sample_rate: int) -> "_Stream":
        return _Stream(speed, sample_rate)


class _Stream:
    def __init__(self, speed: float, sample_rate: int) -> None:
        self.speed, self.rate = float(speed), sample_rate
        self.block = int(BLOCK_SECONDS * sample_rate)
        self.context_len = int(CONTEXT_SECONDS * sample_rate)
        self.fade = int(FADE_SECONDS * sample_rate)
        self.pending = _empty()  # input not stretched yet
        self.context = _empty()  # the input just before it
        self.tail = _empty()  # the end of the last block's output, held back for the crossfade
        self.taken = 0  # input samples stretched
        self.due = 0  # output samples owed so far: out, or held back in `tail`

    def push(self, samples: array) -> array:
        self.pending = np.concatenate([self.pending, np.asarray(samples, np.float32)])
        out = []
        while len(self.pending) >= self.block:
            out.append(self._stretch(self.pending[: self.block], final=False))
            self.pending = self.pending[self.block:]
        return _array(np.concatenate(out) if out else _empty())

    def finish(self) -> array:
        out = self._stretch(self.pending, final=True) if len(self.pending) else self.tail
        self.pending = self.tail = _empty()
        return _array(out)

    def _stretch(self, block: np.ndarray, final: bool) -> np.ndarray:
        """The output this block owes (the input so far / speed, less what is accounted for),
        but its last few milliseconds, held back: the next block, stretched with this one's end
        as context, makes them again, and the two are crossfaded."""
        joined = np.concatenate([self.context, block])
        stretched = time_stretch(joined[None, :], self.rate, stretch_factor=self.speed)[0]
        skip = int(round(len(self.context) / self.speed))
        self.taken += len(block)
        want = int(round(self.taken / self.speed)) - self.due
        body = _fit(stretched[skip:skip + want], want)
        out = []
        if len(self.tail):  # the held-back end of the last block, as both blocks made it
            n = len(self.tail)
            again = _fit(stretched[max(0, skip - n):skip], n, front=True)
            ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
            out.append(self.tail * (1 - ramp) + again * ramp)
        self.due += want
        hold = 0 if final else min(self.fade, len(body))
        out.append(body[:len(body) - hold])
        self.tail = body[len(body) - hold:].copy()
        self.context = joined[-self.context_len:]
        return np.concatenate(out)


def _fit(samples: np.ndarray, n: int, front: bool = False) -> np.ndarray:
    """`samples` made exactly `n` long (Rubber Band's ends may be short by a few samples)."""
    if len(samples) >= n:
        return samples[:n]
    pad = np.zeros(n - len(samples), np.float32)
    return np.concatenate([pad, samples] if front else [samples, pad])


def _empty() -> np.ndarray:
    return np.zeros(0, np.float32)


def _array(samples: np.ndarray) -> array:
    out = array("f")
    out.frombytes(samples.astype("<f4", copy=False).tobytes())
    return out
