"""Loading the model, the text tokenizer and the audio tokenizer from a volume, in either
checkpoint layout (the original bosonai one is converted by key mapping at load time)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from boson_multimodal.layout import ModelPaths, read_revision

log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """The weights cannot be loaded. `path` is where, `missing` lists what is absent."""

    def __init__(self, message: str, path: Path | str, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.path = str(path)
        self.missing = list(missing or [])


@dataclass
class LoadedBundle:
    model: torch.nn.Module
    tokenizer: object
    audio_tokenizer: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    info: dict = field(default_factory=dict)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not directory.is_dir():
        raise ModelLoadError(f"model directory {directory} does not exist", directory, [str(directory)])
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing", directory, ["config.json"])
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}", directory, []) from exc


def load_bundle(
    paths: ModelPaths,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedBundle:
    from boson_multimodal import convert
    from boson_multimodal.resample import provide_torchaudio

    stand_in = provide_torchaudio()
    from transformers import AutoTokenizer, HiggsAudioV2ForConditionalGeneration
    from transformers.models.higgs_audio_v2_tokenizer.modeling_higgs_audio_v2_tokenizer import (
        HiggsAudioV2TokenizerModel,
    )

    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)

    generation_layout = _layout(convert.detect_layout, paths.generation)
    tokenizer_layout = _layout(convert.detect_layout, paths.tokenizer)
    try:
        if generation_layout == "original":
            config, state = convert.load_original_generation(paths.generation)
            model = convert.build_model(HiggsAudioV2ForConditionalGeneration, config, state, dtype, paths.generation)
        else:
            model = HiggsAudioV2ForConditionalGeneration.from_pretrained(paths.generation, dtype=dtype)
        model = model.to(device=device, dtype=dtype).eval()
        keep_rope_in_float32(model)
        if tokenizer_layout == "original":
            config, state = convert.load_original_audio_tokenizer(paths.tokenizer)
            audio_tokenizer = convert.build_model(HiggsAudioV2TokenizerModel, config, state, torch.float32,
                                                  paths.tokenizer)
        else:
            audio_tokenizer = HiggsAudioV2TokenizerModel.from_pretrained(paths.tokenizer)
        # the codec runs in float32: it is small, and bf16 hurts its waveform
        audio_tokenizer = audio_tokenizer.to(device=device, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(paths.generation)
    except ModelLoadError:
        raise
    except Exception as exc:  # safetensors, pickle, shape and key errors alike
        raise ModelLoadError(f"could not load the model from {paths.root}: {exc}", paths.root) from exc

    info = {
        "model_path": str(paths.root),
        "layout": generation_layout,
        "tokenizer_layout": tokenizer_layout,
        "revision": read_revision(paths.generation),
        "tokenizer_revision": read_revision(paths.tokenizer),
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "demo": paths.is_demo,
        "resampler": "builtin" if stand_in else "torchaudio",
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return LoadedBundle(model, tokenizer, audio_tokenizer, device, dtype, info)


def keep_rope_in_float32(model: torch.nn.Module) -> None:
    """`model.to(dtype=bf16)` casts the rotary inverse frequencies too (a 2e-3 relative error,
    radians of phase a few hundred positions in); the reference implementation keeps them in
    float32. Recompute them in float32 from the config with the module's own init function."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    for module in model.modules():
        if not hasattr(module, "inv_freq") or not hasattr(module, "rope_type"):
            continue
        if module.rope_type == "default":
            init = module.compute_default_rope_parameters
        else:
            init = ROPE_INIT_FUNCTIONS[module.rope_type]
        inv_freq, _ = init(module.config, device=module.inv_freq.device)
        module.inv_freq = inv_freq.to(device=module.inv_freq.device, dtype=torch.float32)
        if hasattr(module, "original_inv_freq"):
            module.original_inv_freq = module.inv_freq.clone()


def _layout(detect, directory: Path) -> str:
    try:
        return detect(directory)
    except FileNotFoundError as exc:
        raise ModelLoadError(str(exc), directory, [str(directory)]) from exc
    except ValueError as exc:
        raise ModelLoadError(str(exc), directory) from exc
