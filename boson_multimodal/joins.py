"""Where a request's text chunks meet: short fades so joins do not click, the silence that ends
a chunk early, and the stop a speaking session's barge-in adds to a request's cancel."""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

FRAME_RATE = 25
SEAM_FADE_SECONDS = 0.005
SILENCE_RMS = 10 ** (-50 / 20)  # -50 dBFS
SILENCE_SECONDS = 2.0


class SilenceWatch:
    """Stops generation after `SILENCE_SECONDS` of silence that follows speech."""

    def __init__(self, sample_rate: int) -> None:
        self.window = sample_rate // FRAME_RATE
        self.needed = int(SILENCE_SECONDS * FRAME_RATE)
        self.heard_speech = False
        self.silent = 0
        self.stop = False

    def feed(self, samples: np.ndarray) -> None:
        n = len(samples) // self.window
        if n == 0:
            return
        rms = np.sqrt(np.mean(samples[: n * self.window].reshape(n, self.window) ** 2, axis=1))
        for value in rms:
            if value >= SILENCE_RMS:
                self.heard_speech, self.silent = True, 0
            else:
                self.silent += 1
        self.stop = self.heard_speech and self.silent >= self.needed


class Seams:
    """Short fades where one text chunk's audio meets the next, so the join does not click."""

    def __init__(self, sample_rate: int, fade_in: bool, fade_out: Callable[[], bool]) -> None:
        self.sample_rate = sample_rate
        self.fade_in, self.fade_out = fade_in, fade_out

    def __call__(self, segments: list, final: bool) -> list:
        if segments and self.fade_in:
            segments[0].samples = _fade(segments[0].samples, self.sample_rate, fade_in=True)
            self.fade_in = False
        if segments and final and self.fade_out():
            segments[-1].samples = _fade(segments[-1].samples, self.sample_rate, fade_in=False)
        return segments


class Either:
    """Stops a decode when either the request is cancelled or the session interrupts it."""

    def __init__(self, cancel: threading.Event, interrupted: Callable[[], bool]) -> None:
        self.cancel, self.interrupted = cancel, interrupted

    def is_set(self) -> bool:
        return self.cancel.is_set() or self.interrupted()

    def set(self) -> None:
        self.cancel.set()


def _fade(samples: np.ndarray, sample_rate: int, fade_in: bool) -> np.ndarray:
    n = min(len(samples), int(SEAM_FADE_SECONDS * sample_rate))
    if n == 0:
        return samples
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out = samples.copy()
    if fade_in:
        out[:n] *= ramp
    else:
        out[-n:] *= ramp[::-1]
    return out
