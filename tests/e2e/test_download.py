"""`higgs-tts download` against a fake hub on 127.0.0.1 (tests/fake_hub.py, through HF_ENDPOINT),
serving the demo bundle's two components as the two repos: into a volume and into a hub cache,
a download cut half-way resumed, a wrong revision refused, a different model never written over,
an unreachable hub named; then `synth` loads what was downloaded, the cache one offline."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_hub import FakeHub
from tests.integration.runpod_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
GENERATION = "bosonai/higgs-audio-v2-generation-3B-base"
TOKENIZER = "bosonai/higgs-audio-v2-tokenizer"
SHA = {GENERATION: "1" * 40, TOKENIZER: "2" * 40}


@pytest.fixture
def hub(demo_bundle):
    hub = FakeHub({GENERATION: (demo_bundle.generation, SHA[GENERATION]),
                   TOKENIZER: (demo_bundle.tokenizer, SHA[TOKENIZER])},
                  fail_once={f"{GENERATION}/model.safetensors"})
    yield hub
    hub.close()


def higgs_tts(*args, tmp_path, **env):
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT / 'tests' / 'netguard'}:{ROOT}",
            "NETGUARD_LOG": str(tmp_path / "netguard.log"), "HOME": str(tmp_path), "HIGGS_DEVICE": "cpu",
            "HIGGS_STORE": "none", "HF_HUB_DISABLE_TELEMETRY": "1", **env}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=full, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_download_into_a_volume_resumes_and_then_synth_loads_it(hub, demo_bundle, tmp_path):
    volume = tmp_path / "volume"
    result = higgs_tts("download", "--to", str(volume), tmp_path=tmp_path, HF_ENDPOINT=hub.endpoint)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["generation"]["revision"] == SHA[GENERATION] and summary["tokenizer"]["revision"] == SHA[TOKENIZER]
    assert f"{GENERATION}@{SHA[GENERATION][:12]}: " in result.stderr  # what it fetches, said first
    weights = volume / GENERATION / "model.safetensors"
    assert weights.read_bytes() == (demo_bundle.generation / "model.safetensors").read_bytes()  # resumed whole
    assert sum(r.endswith(f"{GENERATION}/resolve/{SHA[GENERATION]}/model.safetensors") and r.startswith("GET")
               for r in hub.requests) == 2  # cut half-way, then resumed
    assert (volume / GENERATION / "REVISION").read_text().strip() == SHA[GENERATION]
    # the sample voices came with it, and a voice the volume already has is never replaced
    from boson_multimodal.voices import sample_voice_names

    assert sorted(p.stem for p in (volume / "voice_prompts").glob("*.txt")) == sample_voice_names()
    assert "sample voices in" in result.stderr
    mine = volume / "voice_prompts" / "sample_us_male.txt"
    mine.write_text("My own words for it.\n")
    shutil.copytree(demo_bundle.voices, volume / "voice_prompts", dirs_exist_ok=True)
    for name in ("belinda", "sample_us_female"):
        synth = higgs_tts("synth", "--text", "Downloaded.", "--voice", name, "--max-new-tokens", "30",
                          "--out", str(tmp_path / "v.wav"), tmp_path=tmp_path, MODEL_PATH=str(volume))
        assert synth.returncode == 0, synth.stderr[-3000:]
    synth = higgs_tts("synth", "--text", "Downloaded.", "--voice", "belinda", "--max-new-tokens", "30",
                      "--out", str(tmp_path / "x.wav"), tmp_path=tmp_path, MODEL_PATH=str(volume))
    assert synth.returncode == 0, synth.stderr[-3000:]
    assert json.loads(synth.stdout)["metadata"]["model"]["revision"] == SHA[GENERATION]
    again = higgs_tts("download", "--to", str(volume), tmp_path=tmp_path, HF_ENDPOINT=hub.endpoint)
    assert again.returncode == 0, again.stderr[-2000:]  # the same model again: nothing to refuse
    assert mine.read_text() == "My own words for it.\n"


def test_download_into_a_cache_then_synth_offline(hub, tmp_path):
    cache = tmp_path / "hub-cache"
    result = higgs_tts("download", "--cache", str(cache), tmp_path=tmp_path, HF_ENDPOINT=hub.endpoint)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (cache / f"models--{GENERATION.replace('/', '--')}" / "snapshots" / SHA[GENERATION]).is_dir()
    hub.close()  # no hub any more: the cache alone
    synth = higgs_tts("synth", "--text", "From the cache.", "--max-new-tokens", "30", "--out",
                      str(tmp_path / "y.wav"), tmp_path=tmp_path, MODEL_PATH=f"hf://{GENERATION}",
                      HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    assert synth.returncode == 0, synth.stderr[-3000:]
    assert json.loads(synth.stdout)["metadata"]["model"]["revision"] == SHA[GENERATION]
    guard = tmp_path / "netguard.log"
    assert not guard.exists() or guard.read_text() == ""


def test_a_revision_that_does_not_exist_is_refused_clearly(hub, tmp_path):
    result = higgs_tts("download", "--to", str(tmp_path / "v"), "--revision", "no-such-branch", tmp_path=tmp_path,
                       HF_ENDPOINT=hub.endpoint)
    assert result.returncode == 2 and "no revision 'no-such-branch'" in result.stderr
    assert not (tmp_path / "v" / GENERATION / "model.safetensors").exists()


def test_a_different_model_is_never_written_over(hub, demo_bundle, tmp_path):
    volume = tmp_path / "volume"
    (volume / GENERATION).mkdir(parents=True)
    (volume / GENERATION / "config.json").write_text("{}")
    (volume / GENERATION / "REVISION").write_text("9" * 40 + "\n")
    result = higgs_tts("download", "--to", str(volume), tmp_path=tmp_path, HF_ENDPOINT=hub.endpoint)
    assert result.returncode == 2 and "9" * 40 in result.stderr
    assert (volume / GENERATION / "config.json").read_text() == "{}"


def test_an_unreachable_hub_is_named(tmp_path):
    port = free_port()  # nothing listens here
    result = higgs_tts("download", "--to", str(tmp_path / "v"), tmp_path=tmp_path,
                       HF_ENDPOINT=f"http://127.0.0.1:{port}")
    assert result.returncode == 1 and "cannot be reached" in result.stderr


def test_quickstart_downloads_when_the_hub_answers_and_synthesises(hub, tmp_path):
    volume = tmp_path / "fresh"
    result = higgs_tts("quickstart", "--text", "Hello.", "--voice", "sample_us_female", "--max-new-tokens", "30",
                       "--out", str(tmp_path / "q.wav"), tmp_path=tmp_path, HF_ENDPOINT=hub.endpoint,
                       MODEL_PATH=str(volume))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "downloading them" in result.stderr and "DEMO" not in result.stderr
    assert "no GPU" in result.stderr  # says how slow before starting
    assert "is not in" not in result.stderr  # the voice `make run` names came with the download
    assert json.loads(result.stdout)["metadata"]["voices"] == ["sample_us_female"]
    assert (volume / GENERATION / "REVISION").read_text().strip() == SHA[GENERATION]
    assert json.loads(result.stdout)["metadata"]["model"]["revision"] == SHA[GENERATION]


def test_quickstart_falls_back_to_the_demo_only_when_the_hub_cannot_be_reached(hub, tmp_path):
    port = free_port()
    result = higgs_tts("quickstart", "--text", "Hello.", "--max-new-tokens", "30", "--out", str(tmp_path / "d.wav"),
                       tmp_path=tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{port}", MODEL_PATH=str(tmp_path / "none"),
                       HIGGS_DEMO_MODEL_DIR=str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "falling back to the demo bundle: the hub cannot be reached" in result.stderr and "DEMO" in result.stderr
    forced = higgs_tts("quickstart", "--text", "Hello.", "--max-new-tokens", "30", "--out", str(tmp_path / "f.wav"),
                       tmp_path=tmp_path, HF_ENDPOINT=hub.endpoint, MODEL_PATH=str(tmp_path / "none"),
                       HIGGS_DEMO_FALLBACK="1", HIGGS_DEMO_MODEL_DIR=str(tmp_path / "demo"))
    assert forced.returncode == 0 and "HIGGS_DEMO_FALLBACK=1" in forced.stderr
    assert hub.requests == []  # the demo was asked for: the hub was never called
