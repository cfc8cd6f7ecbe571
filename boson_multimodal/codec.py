"""Audio <-> codes: reading reference clips, the delay pattern, and the audio tokenizer."""

from __future__ import annotations

import io

import numpy as np
import torch

from boson_multimodal.resample import resample

SAMPLE_RATE = 24_000


class AudioInputError(ValueError):
    """A reference clip that cannot be used; the message says why."""


def read_clip(data: bytes, max_seconds: float = 30.0, min_seconds: float = 0.2) -> np.ndarray:
    """Audio file bytes (WAV, FLAC, OGG, ...) -> mono float32 at 24 kHz."""
    import soundfile as sf

    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors are plain RuntimeErrors
        raise AudioInputError(f"cannot decode reference audio ({exc}); send WAV, FLAC or OGG") from exc
    seconds = wave.shape[0] / rate if rate else 0.0
    if seconds > max_seconds:
        raise AudioInputError(f"reference audio is {seconds:.1f}s long; the limit is {max_seconds:g}s")
    if seconds < min_seconds:
        raise AudioInputError(f"reference audio is {seconds:.2f}s long; at least {min_seconds:g}s is needed")
    mono = wave.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioInputError("reference audio contains NaN or infinite samples")
    if rate != SAMPLE_RATE:
        mono = resample(torch.from_numpy(mono), rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def delay_frames(codes: torch.Tensor, bos: int, eos: int) -> torch.Tensor:
    """Codes [T, K] (time-major) -> delayed frames [T + K + 1, K]: a BOS frame and an EOS frame
    around the clip, codebook k shifted k frames later, the gaps filled with BOS before and EOS
    after. This is how audio sits in the prompt."""
    steps, k = codes.shape
    framed = torch.cat([codes.new_full((1, k), bos), codes, codes.new_full((1, k), eos)])
    out = codes.new_full((steps + 2 + k - 1, k), bos)
    for i in range(k):
        out[i : i + steps + 2, i] = framed[:, i]
        out[i + steps + 2 :, i] = eos
    return out


def undelay(frames: torch.Tensor) -> torch.Tensor:
    """Delayed frames [N, K] (after the leading BOS frame) -> codes [N - K + 1, K]."""
    n, k = frames.shape
    steps = n - k + 1
    if steps <= 0:
        return frames.new_empty((0, k))
    return torch.stack([frames[i : i + steps, i] for i in range(k)], dim=1)


class AudioCodec:
    """The Higgs audio tokenizer: 24 kHz waveform <-> codes [T, 8] at 25 frames per second."""

    def __init__(self, model, device: torch.device | str = "cpu") -> None:
        self.model = model
        self.device = torch.device(device)
        self.sample_rate = int(model.config.sample_rate)
        self.hop = int(model.config.hop_length)
        self.num_codebooks = int(model.config.num_quantizers)
        self.codebook_size = int(model.config.codebook_size)

    @torch.inference_mode()
    def encode(self, wave: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(wave, dtype=np.float32)).to(self.device)[None, None]
        codes = self.model.encode(x, return_dict=False)  # [1, K, T]
        return codes[0].transpose(0, 1).contiguous().cpu()

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """Codes [T, K] -> waveform of exactly T * hop samples."""
        if codes.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        x = codes.clamp(0, self.codebook_size - 1).transpose(0, 1)[None].to(self.device)
        wave = self.model.decode(x, return_dict=False)[0, 0]
        return wave.float().cpu().numpy()
