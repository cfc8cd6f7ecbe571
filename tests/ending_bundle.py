"""A demo bundle whose model ends its audio: the tiny random model never does (its EOS logits
are 0), which makes long texts take minutes. Here one hidden dimension carries a large constant
(every embedding has it), the final norm keeps only that dimension, and only the EOS code of
each codebook reads it: every other code has logit 0, EOS a logit that makes it about one draw
in `1 / eos_rate` per codebook at the service's default temperature (any codebook's EOS ends the
stream). A chunk then ends with its end token after a few dozen frames, of noise, as the demo's
audio always is."""

from __future__ import annotations

import math
from pathlib import Path

from safetensors.torch import load_file, save_file

from boson_multimodal.demo import write_demo_bundle
from boson_multimodal.layout import ModelPaths

CONSTANT = 100.0  # added to hidden dimension 0 of every token's embedding


def write_ending_bundle(root: Path, eos_rate: float = 0.001, temperature: float = 0.3) -> ModelPaths:
    paths = write_demo_bundle(root)
    weights = paths.generation / "model.safetensors"
    state = load_file(str(weights))
    config_codes = state["audio_lm_head.weight"].shape[0] // 8
    hidden = state["model.norm.weight"].shape[0]
    for name in ("model.embed_tokens.weight", "model.embed_audio_tokens.embed_audio_tokens.weight"):
        state[name][:, 0] += CONSTANT
    state["model.norm.weight"].zero_()
    state["model.norm.weight"][0] = 1.0
    head = state["audio_lm_head.weight"].view(8, config_codes, hidden)
    head.zero_()
    # after the norm, dimension 0 is about sqrt(hidden) (it dominates the root mean square)
    logit = temperature * math.log(eos_rate * (config_codes - 1) / (1 - eos_rate))
    head[:, config_codes - 1, 0] = logit / math.sqrt(hidden)
    save_file(state, str(weights), metadata={"format": "pt"})
    return paths
