"""Weights from a Hugging Face hub cache, with no network: MODEL_PATH=hf://ORG/NAME[@REVISION],
and the cache searched when the volume has no weights (how RunPod "cached models" arrive:
/runpod-volume/huggingface-cache/hub, HF_HUB_OFFLINE=1). The caches are built here in the hub's
layout (models--ORG--NAME/refs, snapshots/<commit>) from the demo bundle."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.container import resolve_model_paths
from app.settings import Settings
from boson_multimodal.layout import from_hub_cache, read_revision

ROOT = Path(__file__).resolve().parents[2]
GENERATION = "bosonai/higgs-audio-v2-generation-3B-base"
TOKENIZER = "bosonai/higgs-audio-v2-tokenizer"
COMMITS = {GENERATION: "a" * 40, TOKENIZER: "b" * 40}


def put_in_cache(cache: Path, repo: str, source: Path, commit: str, branch: str | None = "main") -> Path:
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(source, snapshot)
    if branch:
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / branch).write_text(commit)
    return snapshot


@pytest.fixture
def cache(tmp_path, demo_bundle, monkeypatch):
    cache = tmp_path / "hub"
    put_in_cache(cache, GENERATION, demo_bundle.generation, COMMITS[GENERATION])
    put_in_cache(cache, TOKENIZER, demo_bundle.tokenizer, COMMITS[TOKENIZER])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HOME", raising=False)
    return cache


def test_a_hub_repo_loads_from_the_cache_with_its_revision(cache, tmp_path):
    settings = Settings.from_env({"MODEL_PATH": f"hf://{GENERATION}"})
    paths = resolve_model_paths(settings)
    assert paths.generation == cache / f"models--{GENERATION.replace('/', '--')}" / "snapshots" / COMMITS[GENERATION]
    assert paths.has_weights() and read_revision(paths.generation) == COMMITS[GENERATION]
    assert read_revision(paths.tokenizer) == COMMITS[TOKENIZER]


def test_a_pinned_revision_picks_its_snapshot_and_an_unknown_one_is_not_found(cache, demo_bundle):
    other = "c" * 40
    put_in_cache(cache, GENERATION, demo_bundle.generation, other, branch=None)
    pinned = resolve_model_paths(Settings.from_env({"MODEL_PATH": f"hf://{GENERATION}@{other}"}))
    assert pinned.generation.name == other and pinned.has_weights()
    missing = resolve_model_paths(Settings.from_env({"MODEL_PATH": f"hf://{GENERATION}@{'d' * 40}"}))
    assert not missing.has_weights()


def test_a_volume_without_weights_falls_back_to_the_cache(cache, tmp_path):
    paths = resolve_model_paths(Settings.from_env({"MODEL_PATH": str(tmp_path / "empty-volume")}))
    assert paths.has_weights() and read_revision(paths.generation) == COMMITS[GENERATION]
    assert paths.voices == tmp_path / "empty-volume" / "voice_prompts"  # voices stay on the volume


def test_a_volume_with_weights_wins_over_the_cache(cache, demo_bundle):
    paths = resolve_model_paths(Settings.from_env({"MODEL_PATH": str(demo_bundle.root)}))
    assert paths.generation == demo_bundle.generation


def test_an_incomplete_cache_is_not_used(tmp_path, demo_bundle):
    cache = tmp_path / "partial"
    put_in_cache(cache, GENERATION, demo_bundle.generation, COMMITS[GENERATION])  # no tokenizer
    assert from_hub_cache(GENERATION, TOKENIZER, tmp_path / "v", caches=[cache]) is None


@pytest.mark.parametrize("value", ["hf://justaname", "hf://a/b/c", "hf:///b", "hf://a/"])
def test_a_malformed_hub_model_path_is_a_configuration_error(value):
    with pytest.raises(ValueError, match="hf://ORG/NAME"):
        Settings.from_env({"MODEL_PATH": value})


def test_synth_offline_from_a_cache_reports_the_revision(cache, demo_bundle, tmp_path):
    voices = tmp_path / "volume" / "voice_prompts"
    shutil.copytree(demo_bundle.voices, voices)
    guard = tmp_path / "netguard.log"  # outbound connections are refused and recorded
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT / 'tests' / 'netguard'}:{ROOT}",
           "NETGUARD_LOG": str(guard), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "MODEL_PATH": f"hf://{GENERATION}", "HIGGS_VOICES_SUBDIR": str(voices), "HIGGS_DEVICE": "cpu",
           "HIGGS_STORE": "none", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "app.cli", "synth", "--text", "Hello from the cache.",
                             "--voice", "belinda", "--seed", "1", "--max-new-tokens", "40",
                             "--out", str(tmp_path / "x.wav")],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["success"] and summary["frames"] > 0
    assert summary["metadata"]["model"]["revision"] == COMMITS[GENERATION]
    assert not guard.exists() or guard.read_text() == ""


def test_locating_the_model_says_why_and_writes_nothing(cache, demo_bundle, tmp_path, monkeypatch):
    """Each choice of locate_model, in its order of preference; only resolve_model_paths writes
    (the demo bundle, when that is the choice)."""
    from app.container import locate_model

    demo_dir = tmp_path / "demo-bundle"
    empty = str(tmp_path / "empty-volume")
    cases = [
        ({"MODEL_PATH": f"hf://{GENERATION}"}, "hub-repo"),
        ({"MODEL_PATH": f"hf://{GENERATION}@{'e' * 40}"}, "hub-repo-missing"),
        ({"MODEL_PATH": str(demo_bundle.root)}, "volume"),
        ({"MODEL_PATH": empty}, "hub-cache"),
    ]
    for env, source in cases:
        assert locate_model(Settings.from_env(env)).source == source, env
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "nowhere"))  # no cache: the last two choices
    fallback = Settings.from_env({"MODEL_PATH": empty, "HIGGS_DEMO_FALLBACK": "1",
                                  "HIGGS_DEMO_MODEL_DIR": str(demo_dir)})
    assert locate_model(fallback).source == "demo" and not demo_dir.exists()
    assert locate_model(Settings.from_env({"MODEL_PATH": empty})).source == "missing"
    assert not demo_dir.exists() and not (tmp_path / "empty-volume").exists()
    assert resolve_model_paths(fallback).has_weights() and demo_dir.exists()  # written by the resolver
