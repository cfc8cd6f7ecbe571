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


@dataclass
class Component:
    """One part of the bundle as read before its weights are: where, which layout, its native
    config, and for the original layout the converted weights (a native checkpoint's weights
    are read by from_pretrained)."""

    name: str  # "generation model" or "audio tokenizer"
    source: Path
    layout: str
    config: object
    state: dict | None = None
    quantizers_held: int = 0  # the audio tokenizer: RVQ layers its weights hold


def open_components(paths: ModelPaths) -> tuple[Component, Component]:
    """The generation model and the audio tokenizer as far as they can be read without loading
    a native checkpoint's weights (configs, tensor names), checked to agree on codebooks."""
    from transformers import HiggsAudioV2Config, HiggsAudioV2TokenizerConfig

    from boson_multimodal import convert
    from boson_multimodal.remap import held_quantizers

    layout = _layout(convert.detect_layout, paths.generation)
    if layout == "original":
        generation = Component("generation model", paths.generation, layout,
                               *convert.load_original_generation(paths.generation))
    else:
        generation = Component("generation model", paths.generation, layout,
                               HiggsAudioV2Config.from_pretrained(paths.generation))
    layout = _layout(convert.detect_layout, paths.tokenizer)
    if layout == "original":
        tokenizer = Component("audio tokenizer", paths.tokenizer, layout,
                              *convert.load_original_audio_tokenizer(paths.tokenizer))
        tokenizer.quantizers_held = held_quantizers(tokenizer.state)
    else:
        tokenizer = Component("audio tokenizer", paths.tokenizer, layout,
                              HiggsAudioV2TokenizerConfig.from_pretrained(paths.tokenizer))
        tokenizer.quantizers_held = held_quantizers(convert.tensor_names(paths.tokenizer))
    check_codebooks(generation, tokenizer)
    return generation, tokenizer


def check_codebooks(generation: Component, tokenizer: Component) -> None:
    """The audio tokenizer's config decides how many quantizers it builds and encodes with (from
    its largest bandwidth); its weights hold some number of them; the generation model reads and
    writes some number of codebooks. All three must be one number."""
    implied = int(tokenizer.config.num_quantizers)
    codebooks = int(generation.config.num_codebooks)
    if implied == tokenizer.quantizers_held == codebooks:
        return
    from boson_multimodal.remap import bandwidths_for

    config = tokenizer.config
    bandwidths = list(config.target_bandwidths)
    per = config.frame_rate * config.codebook_nbits / 1000
    fix = bandwidths_for(tokenizer.quantizers_held, config.frame_rate, config.codebook_size)[-1]
    raise ModelLoadError(
        f"the audio tokenizer and the generation model disagree on codebooks: the audio tokenizer's config "
        f"({tokenizer.source / 'config.json'}) implies {implied} quantizers (target_bandwidths ends at "
        f"{bandwidths[-1]:g} kbps, {per:g} kbps each), its weights hold {tokenizer.quantizers_held}, and the "
        f"generation model ({generation.source / 'config.json'}) has {codebooks} codebooks. With "
        f"{tokenizer.quantizers_held} quantizers in the weights, target_bandwidths must end at "
        f"{fix:g}", tokenizer.source)


def _materialize(cls, component: Component, dtype: torch.dtype):
    from boson_multimodal import convert

    if component.state is not None:
        return convert.build_model(cls, component.config, component.state, dtype, component.source)
    model, info = cls.from_pretrained(component.source, config=component.config, dtype=dtype,
                                      output_loading_info=True)
    wrong = {k: sorted(v)[:5] for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if wrong:  # from_pretrained would leave these at random values: the audio would be noise
        raise ModelLoadError(f"{component.source}: the {component.name}'s weights do not fit its config: {wrong}",
                             component.source, info.get("missing_keys"))
    if info.get("unexpected_keys"):
        log.warning("%s: weights the %s does not use: %s", component.source, component.name,
                    sorted(info["unexpected_keys"])[:5])
    return model


def load_bundle(
    paths: ModelPaths,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedBundle:
    from boson_multimodal.resample import provide_torchaudio

    stand_in = provide_torchaudio()
    from transformers import HiggsAudioV2ForConditionalGeneration
    from transformers.models.higgs_audio_v2_tokenizer.modeling_higgs_audio_v2_tokenizer import (
        HiggsAudioV2TokenizerModel,
    )

    from boson_multimodal import convert

    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    try:
        generation, codec = open_components(paths)
        model = _materialize(HiggsAudioV2ForConditionalGeneration, generation, dtype)
        model = model.to(device=device, dtype=dtype).eval()
        keep_rope_in_float32(model)
        # the codec runs in float32: it is small, and bf16 hurts its waveform
        audio_tokenizer = _materialize(HiggsAudioV2TokenizerModel, codec, torch.float32)
        audio_tokenizer = audio_tokenizer.to(device=device, dtype=torch.float32).eval()
        tokenizer = convert.text_tokenizer(paths.generation, generation.layout)
    except ModelLoadError:
        raise
    except Exception as exc:  # safetensors, pickle, shape and key errors alike
        raise ModelLoadError(f"could not load the model from {paths.root}: {exc}", paths.root) from exc

    info = {
        "model_path": str(paths.root),
        "layout": generation.layout,
        "tokenizer_layout": codec.layout,
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
