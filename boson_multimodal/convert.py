"""Placeholder until the conversion module lands: detects the transformers-native layout."""

from __future__ import annotations

import json
from pathlib import Path


def detect_layout(path) -> str:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} is missing")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type in ("higgs_audio_v2", "higgs_audio_v2_tokenizer"):
        return "transformers"
    raise ValueError(f"{path}: unknown checkpoint layout (model_type={model_type!r})")
