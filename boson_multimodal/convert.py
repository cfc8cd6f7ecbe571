"""The original bosonai checkpoint layout -> transformers' native higgs_audio_v2 layout.

The hub repos were rewritten in place (spring 2026); a volume may still hold a snapshot of the
original layout: `model_type: higgs_audio` with upstream weight names for the generation model,
and an xcodec-style `config.json` + `model.pth` for the audio tokenizer. Both are converted by
renaming keys (and, for the tokenizer, folding weight norm into plain weights), at load time or
once with `higgs-tts convert SRC DST`. The mapping (`remap.py`) is proven by tests/parity
(fixtures made with upstream's own code, tools/upstream_parity); this module reads the original
files and writes converted ones.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from boson_multimodal.remap import (
    ConversionError,
    generation_config,
    generation_state,
    tokenizer_config,
    tokenizer_state,
)

log = logging.getLogger(__name__)

TRANSFORMERS = "transformers"
ORIGINAL = "original"


# -- which layout ------------------------------------------------------------------------


def detect_layout(path) -> str:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} is missing")
    raw = json.loads(config.read_text(encoding="utf-8"))
    model_type = raw.get("model_type")
    if model_type in ("higgs_audio_v2", "higgs_audio_v2_tokenizer"):
        return TRANSFORMERS
    if model_type == "higgs_audio":
        return ORIGINAL
    if model_type is None and {"ratios", "n_q"} <= set(raw) and (path / "model.pth").is_file():
        return ORIGINAL  # the xcodec-style audio tokenizer
    raise ValueError(f"{path}: unknown checkpoint layout (model_type={model_type!r})")


# -- generation model ----------------------------------------------------------------------


def _safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {directory}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def tensor_names(directory) -> list[str]:
    """The tensor names a directory's safetensors files hold, from their headers alone."""
    from safetensors import safe_open

    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {directory}")
    names: list[str] = []
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            names.extend(f.keys())
    return names


def text_tokenizer(directory, layout: str) -> Any:
    """The text tokenizer beside the generation weights. The original layout's config.json is
    of a model type transformers does not know, so AutoTokenizer, reading it to pick a class,
    warns; its tokenizer_config names PreTrainedTokenizerFast, which is loaded directly."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    return (PreTrainedTokenizerFast if layout == "original" else AutoTokenizer).from_pretrained(directory)


def load_original_generation(directory) -> tuple[Any, dict[str, torch.Tensor]]:
    directory = Path(directory)
    raw = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    try:
        tokenizer = text_tokenizer(directory, "original")
    except Exception:  # the delay token then keeps its published id
        tokenizer = None
    config = generation_config(raw, tokenizer)
    return config, generation_state(_safetensors(directory))


# -- audio tokenizer -----------------------------------------------------------------------


def read_tokenizer_weights(path: Path) -> dict[str, torch.Tensor]:
    """`model.pth` is a pickle. Plain tensors load safely; anything else needs full unpickling,
    which runs code from the file: only for a volume you trust (or convert it once)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        log.warning("%s holds more than tensors: unpickling it in full (trusted files only)", path)
        state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_original_audio_tokenizer(directory) -> tuple[Any, dict[str, torch.Tensor]]:
    directory = Path(directory)
    raw = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    weights = directory / "model.pth"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing")
    state = read_tokenizer_weights(weights)
    config = tokenizer_config(raw, state)
    return config, tokenizer_state(state, len(config.acoustic_model_config.downsampling_ratios))


def skeleton(cls, config, state: dict[str, torch.Tensor], source) -> Any:
    """The model `config` describes, built on the meta device (no memory, no random init) and
    given `state`: every weight it needs must be there with its shape, and nothing else. This is
    the check every conversion passes before a weight is copied, and with meta tensors in
    `state` it is the whole model: the real checkpoint's names and shapes can be checked
    without its weights."""
    with torch.device("meta"):
        model = cls(config)
    expected = model.state_dict()
    wrong = {
        "missing_keys": sorted(set(expected) - set(state)),
        "unexpected_keys": sorted(set(state) - set(expected)),
        "mismatched_keys": sorted(f"{k}: {tuple(state[k].shape)} for {tuple(v.shape)}"
                                  for k, v in expected.items() if k in state and state[k].shape != v.shape),
    }
    wrong = {k: v[:5] for k, v in wrong.items() if v}
    if wrong:
        raise ConversionError(f"{source}: the converted weights do not fit the model: {wrong}")
    model.load_state_dict({k: state[k].to("meta") for k in expected}, strict=True, assign=True)
    return model.eval()


def build_model(cls, config, state: dict[str, torch.Tensor], dtype, source) -> Any:
    """A converted state through from_pretrained: no random init of the full-size weights,
    buffers set up as for any checkpoint, and every weight accounted for (checked first on the
    meta device, see `skeleton`; a state of meta tensors gives that skeleton)."""
    model = skeleton(cls, config, state, source)
    if all(t.is_meta for t in state.values()):
        return model
    model, info = cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype,
                                      output_loading_info=True)
    wrong = {k: sorted(v)[:5] for k, v in info.items()
             if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if wrong:
        raise ConversionError(f"{source}: the converted weights do not fit the model: {wrong}")
    return model


# -- once, for a whole volume --------------------------------------------------------------


def convert_bundle(src, dst, report=lambda message: None) -> dict[str, Any]:
    """Writes `dst` (a ModelPaths) in the transformers-native layout from `src` (either layout):
    original components are converted, native ones and the voice prompts are copied. The
    weights keep their dtype. Returns what was done, per component."""
    from boson_multimodal.layout import read_revision
    from boson_multimodal.resample import provide_torchaudio

    provide_torchaudio()  # the tokenizer module imports torchaudio at load
    from transformers import HiggsAudioV2ForConditionalGeneration
    from transformers.models.higgs_audio_v2_tokenizer.modeling_higgs_audio_v2_tokenizer import (
        HiggsAudioV2TokenizerModel,
    )

    done: dict[str, Any] = {}
    for name, source, target in (("generation", src.generation, dst.generation),
                                 ("tokenizer", src.tokenizer, dst.tokenizer)):
        if target.exists() and any(target.iterdir()):
            raise FileExistsError(f"{target} is not empty; convert into a new directory")
        layout = detect_layout(source)
        if layout == TRANSFORMERS:
            report(f"{name}: already in the transformers layout, copying {source}")
            shutil.copytree(source, target, dirs_exist_ok=True)
            done[name] = "copied"
            continue
        report(f"{name}: converting {source} (original layout)")
        if name == "generation":
            config, state = load_original_generation(source)
            cls = HiggsAudioV2ForConditionalGeneration
        else:
            config, state = load_original_audio_tokenizer(source)
            cls = HiggsAudioV2TokenizerModel
        model = build_model(cls, config, state, next(iter(state.values())).dtype, source)
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target)
        if name == "generation":
            text_tokenizer(source, "original").save_pretrained(target)
        revision = read_revision(source)
        if revision:  # the snapshot's hub commit travels with the converted weights
            (target / "REVISION").write_text(f"{revision}\n")
        (target / "CONVERTED.txt").write_text("converted from the original bosonai layout by higgs-tts convert\n")
        done[name] = "converted"
        report(f"{name}: wrote {target}")
    if src.voices.is_dir():
        shutil.copytree(src.voices, dst.voices, dirs_exist_ok=True)
        done["voices"] = sorted(p.stem for p in dst.voices.glob("*.txt"))
    return done
