"""Band-limited (windowed-sinc) resampling in torch, the algorithm torchaudio's `resample` uses
by default (Hann window, 6 zero crossings, rolloff 0.99), so codes match either way.

Why here: torchaudio wheels stop at torch 2.11 and do not import beside newer torch builds,
while transformers' Higgs audio tokenizer imports torchaudio at module load and calls
`torchaudio.functional.resample` (24 kHz -> 16 kHz for its semantic model). When the real
torchaudio is missing, `provide_torchaudio()` registers a module that offers exactly this
one function, and nothing else."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import sys
import types

import torch
import torch.nn.functional as F

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


def _kernel(orig: int, new: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    base_freq = min(orig, new) * ROLLOFF
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / base_freq)
    idx = torch.arange(-width, width + orig, device=device, dtype=dtype)[None, None] / orig
    t = torch.arange(0, -new, -1, device=device, dtype=dtype)[:, None, None] / new + idx
    t = (t * base_freq).clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = torch.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.tensor(1.0, device=device, dtype=dtype), torch.sin(t) / t)
    return sinc * window * (base_freq / orig), width


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample along the last dimension."""
    orig_freq, new_freq = int(orig_freq), int(new_freq)
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError("sample rates must be positive")
    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // gcd, new_freq // gcd
    kernel, width = _kernel(orig, new, waveform.device, waveform.dtype)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1])
    length = flat.shape[-1]
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel, stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    out = out[..., : math.ceil(new * length / orig)]
    return out.reshape(*shape[:-1], out.shape[-1])


def provide_torchaudio() -> bool:
    """Make `import torchaudio` work for transformers' audio tokenizer. Returns True when the
    stand-in was installed, False when a real torchaudio imports."""
    if "torchaudio" in sys.modules:
        return getattr(sys.modules["torchaudio"], "_higgs_tts_stand_in", False)
    try:
        import torchaudio  # noqa: F401

        return False
    except Exception:  # missing, or a wheel built for another torch
        sys.modules.pop("torchaudio", None)
    module = types.ModuleType("torchaudio")
    functional = types.ModuleType("torchaudio.functional")
    functional.resample = resample
    module.functional = functional
    module.__version__ = "0+higgs_tts.resample_only"
    module._higgs_tts_stand_in = True
    module.__spec__ = importlib.machinery.ModuleSpec("torchaudio", loader=None)
    functional.__spec__ = importlib.machinery.ModuleSpec("torchaudio.functional", loader=None)
    sys.modules["torchaudio"] = module
    sys.modules["torchaudio.functional"] = functional
    return True
