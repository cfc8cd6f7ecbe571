"""Codes to waveform while frames are still being generated.

Time step t of the audio is complete once delayed frame t + K exists (frame 0 is the BOS frame).
As in the reference implementation, the newest complete time step is never audio (at the end of
a stream it holds the stream-EOS codes) and codes are clipped to the codebook, so no BOS/EOS id
is ever decoded or fed back into a prompt. Chunks of time steps are decoded with `left` and
`right` frames of context on each side and the context's samples dropped, so the concatenated
chunks equal a one-shot decode of all the codes (one frame's codes change the waveform up to 10
frames away each way in the reference codec's architecture: with 8 frames of context, seams were
off by 5e-4; with 12, by 5e-7)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from boson_multimodal.codec import AudioCodec, undelay


@dataclass
class Segment:
    start: int  # first time step (audio frame) in this segment
    samples: np.ndarray  # float32


class StreamingVocoder:
    def __init__(
        self,
        codec: AudioCodec,
        left: int = 12,
        right: int = 12,
        first_chunk: int = 10,
        chunk: int = 25,
    ) -> None:
        self.codec = codec
        self.left, self.right = left, right
        self.first_chunk, self.chunk = first_chunk, chunk
        self.k = codec.num_codebooks
        self.frames: list[torch.Tensor] = []
        self.count = 0  # delayed frames received, BOS frame included
        self.ended = False
        self.emitted = 0  # time steps already turned into audio
        self.decode_seconds = 0.0

    def push(self, block: torch.Tensor) -> list[Segment]:
        """Add delayed frames; returns the segments that became complete."""
        if self.ended or block.numel() == 0:
            return []
        self.frames.append(block)
        self.count += block.shape[0]
        return self._emit(final=False)

    def frames_for_first_audio(self) -> int:
        """Delayed frames (BOS frame included) before the first chunk can be decoded: the chunk,
        its right context, the step held back, K - 1 frames of delay and the BOS frame."""
        return self.first_chunk + self.right + self.k + 1

    def finish(self) -> list[Segment]:
        """No more frames will come: decode what is left."""
        self.ended = True
        return self._emit(final=True)

    def codes(self) -> torch.Tensor:
        """The audio codes so far, [T, K], time-major: every complete time step but the newest,
        clipped to the codebook."""
        if not self.frames:
            return torch.empty((0, self.k), dtype=torch.long)
        frames = torch.cat(self.frames)
        self.frames = [frames]
        return undelay(frames[1:])[:-1].clamp(0, self.codec.codebook_size - 1)  # frame 0 is the BOS frame

    def _emit(self, final: bool) -> list[Segment]:
        import time

        codes = self.codes()
        total = codes.shape[0]
        out: list[Segment] = []
        while self.emitted < total:
            size = self.first_chunk if self.emitted == 0 else self.chunk
            end = min(self.emitted + size, total)
            if not final and end + self.right > total:
                break
            if final and total - end < size // 2:  # no tiny last chunk
                end = total
            lo = max(0, self.emitted - self.left)
            hi = min(total, end + self.right)
            started = time.perf_counter()
            wave = self.codec.decode(codes[lo:hi])
            self.decode_seconds += time.perf_counter() - started
            hop = self.codec.hop
            out.append(Segment(self.emitted, wave[(self.emitted - lo) * hop : (end - lo) * hop]))
            self.emitted = end
        return out
