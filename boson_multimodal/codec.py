"""Audio <-> codes: reading reference clips, the delay pattern, and the audio tokenizer."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 24_000


class AudioInputError(ValueError):
    """A reference clip that cannot be used; the message says why."""


CLIP_FORMATS = ("WAV", "WAVEX", "FLAC", "OGG")  # libsndfile's names for the containers clips may be in


def read_clip(data: bytes, max_seconds: float = 30.0, min_seconds: float = 0.2) -> np.ndarray:
    """Audio file bytes (WAV, FLAC, OGG, ...) -> mono float32 at 24 kHz, as the reference
    implementation loads clips (librosa: channel mean, soxr HQ resampling, length
    ceil(n * 24000 / rate)). At most `max_seconds` are ever decoded: a small file that
    decompresses into hours is refused from its header, or after the limit when the header
    does not say."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.format not in CLIP_FORMATS:  # one rule on every face: what a voice upload takes
                raise AudioInputError(f"{f.format} reference audio is not accepted; send WAV, FLAC or OGG")
            rate = int(f.samplerate)
            if rate <= 0:
                raise AudioInputError("reference audio has no sample rate")
            limit = int(max_seconds * rate) + 1  # one sample past the limit tells a longer clip
            if limit <= f.frames < (1 << 62):  # libsndfile reports unknown lengths as huge
                raise AudioInputError(
                    f"reference audio is {f.frames / rate:.1f}s long; the limit is {max_seconds:g}s")
            wave = f.read(frames=limit, dtype="float32", always_2d=True)
    except AudioInputError:
        raise
    except Exception as exc:  # libsndfile's errors are plain RuntimeErrors (their text names Python objects)
        raise AudioInputError("cannot decode the reference audio; send WAV, FLAC or OGG") from exc
    seconds = wave.shape[0] / rate
    if wave.shape[0] >= limit:
        raise AudioInputError(f"reference audio is longer than the limit of {max_seconds:g}s")
    if seconds < min_seconds:
        raise AudioInputError(f"reference audio is {seconds:.2f}s long; at least {min_seconds:g}s is needed")
    mono = wave.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioInputError("reference audio contains NaN or infinite samples")
    return resample_to_24k(np.ascontiguousarray(mono, dtype=np.float32), rate)


def resample_to_24k(wave: np.ndarray, rate: int) -> np.ndarray:
    """soxr's high-quality resampler (librosa's default, which the reference implementation
    loads clips with), cut or zero-padded to librosa's length: ceil(n * ratio) with the ratio
    in floating point (13230 samples at 44.1 kHz give 7201, not 7200)."""
    if rate == SAMPLE_RATE:
        return wave
    import soxr

    out = soxr.resample(wave, rate, SAMPLE_RATE, quality="soxr_hq")
    size = math.ceil(wave.shape[0] * (SAMPLE_RATE / rate))
    out = out[:size] if out.shape[0] >= size else np.pad(out, (0, size - out.shape[0]))
    return np.ascontiguousarray(out, dtype=np.float32)


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
        """24 kHz mono -> codes [T, K], as the reference implementation encodes: when the
        acoustic and semantic streams disagree in length, the waveform is padded by
        160 x the semantic downsampling factor (320 samples) a side for the acoustic encoder,
        then both streams are cut to the shorter one. (transformers' `encode` pads
        hop/2 = 480 a side and never cuts, which changes the codes for most clip lengths.)"""
        m = self.model
        x = torch.from_numpy(np.asarray(wave, dtype=np.float32)).to(self.device)[None, None]
        semantic = m.encoder_semantic(m._extract_semantic_features(x).transpose(1, 2))
        acoustic = m.acoustic_encoder(x)
        if acoustic.shape[2] != semantic.shape[2]:
            pad = 160 * m.config.semantic_downsample_factor
            acoustic = m.acoustic_encoder(F.pad(x, (pad, pad)))
        frames = min(acoustic.shape[2], semantic.shape[2])
        embeddings = torch.cat([acoustic[:, :, :frames], semantic[:, :, :frames].to(acoustic.device)], dim=1)
        embeddings = m.fc(embeddings.transpose(1, 2)).transpose(1, 2)
        codes = m.quantizer.encode(embeddings, m.config.target_bandwidths[-1])  # [K, 1, T]
        return codes[:, 0].transpose(0, 1).contiguous().cpu()

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """Codes [T, K] -> waveform of exactly T * hop samples."""
        if codes.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        x = codes.clamp(0, self.codebook_size - 1).transpose(0, 1)[None].to(self.device)
        wave = self.model.decode(x, return_dict=False)[0, 0]
        return wave.float().cpu().numpy()
