"""The ASR pass from the command line: `demo-asr`, `download --asr` (a fake hub on loopback),
then `synth --verify --timestamps word --captions` with what was downloaded, found by
HIGGS_ASR_MODEL=<repo id> under MODEL_PATH; and a hub cache found offline."""

import io
import json

import pytest
import srt
import webvtt

from tests.e2e.test_download import higgs_tts
from tests.fake_hub import FakeHub

pytestmark = pytest.mark.slow

REPO = "openai/whisper-large-v3-turbo"
SHA = "3" * 40
TEXT = "One two three four. Five six seven eight. Nine ten eleven twelve."


@pytest.fixture(scope="module")
def written_asr(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo-asr-cli")
    result = higgs_tts("demo-asr", str(tmp / "asr"), tmp_path=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["asr_model"] == str(tmp / "asr") and 100_000 < summary["bytes"] < 20_000_000
    assert "RANDOM weights" in result.stderr and "HIGGS_ASR_MODEL=" in result.stderr
    return tmp / "asr"


@pytest.fixture
def hub(written_asr):
    hub = FakeHub({REPO: (written_asr, SHA)})
    yield hub
    hub.close()


def test_download_asr_into_the_volume_then_synth_verifies_with_it(hub, demo_bundle, tmp_path):
    import shutil

    volume = tmp_path / "volume"
    shutil.copytree(demo_bundle.root, volume)
    result = higgs_tts("download", "--asr", "--to", str(volume), tmp_path=tmp_path, HF_ENDPOINT=hub.endpoint,
                       HIGGS_ASR_MODEL=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["asr"]["repo"] == REPO and summary["asr"]["revision"] == SHA
    assert (volume / REPO / "config.json").is_file() and (volume / REPO / "REVISION").read_text().strip() == SHA
    assert f"{REPO}@{SHA[:12]}" in result.stderr
    captions = tmp_path / "out.srt"
    result = higgs_tts("synth", "--text", TEXT, "--seed", "2", "--chunk-method", "word", "--chunk-max-word-num", "4",
                       "--max-new-tokens", "80", "--verify", "report", "--timestamps", "word", "--out",
                       str(tmp_path / "out.wav"), "--captions", str(captions), tmp_path=tmp_path,
                       MODEL_PATH=str(volume), HIGGS_ASR_MODEL=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert [v["chunk"] for v in summary["verification"]] == [0, 1, 2]
    assert all({"chunk", "transcript", "wer", "attempts", "kept"} <= set(v) for v in summary["verification"])
    assert summary["words"] == summary["metadata"]["words"] and summary["timings"]["asr"] > 0
    cues = list(srt.parse(captions.read_text()))
    assert all(c.end.total_seconds() <= summary["duration_seconds"] + 1e-3 for c in cues)


def test_the_asr_model_is_found_in_a_hub_cache_offline(hub, demo_bundle, tmp_path):
    cache = tmp_path / "hub-cache"
    result = higgs_tts("download", "--asr", REPO, "--cache", str(cache), tmp_path=tmp_path, HF_ENDPOINT=hub.endpoint)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "x.vtt"
    result = higgs_tts("synth", "--text", "Hello there.", "--seed", "1", "--max-new-tokens", "40",
                       "--captions", str(out), "--out", str(tmp_path / "x.wav"), tmp_path=tmp_path,
                       MODEL_PATH=str(demo_bundle.root), HIGGS_ASR_MODEL=REPO, HF_HUB_CACHE=str(cache),
                       HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "words" in json.loads(result.stdout)  # --captions asks for the word timings itself
    webvtt.from_buffer(io.StringIO(out.read_text()))


def test_a_missing_asr_model_is_named_and_exits_as_a_model_error(demo_bundle, tmp_path):
    result = higgs_tts("synth", "--text", "Hello.", "--verify", tmp_path=tmp_path, MODEL_PATH=str(demo_bundle.root),
                       HIGGS_ASR_MODEL=REPO)
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "MODEL_NOT_FOUND" and REPO in error["message"]
    assert str(demo_bundle.root / REPO) in result.stderr  # the log says where it looked


def test_verify_without_an_asr_model_is_refused(demo_bundle, tmp_path):
    result = higgs_tts("synth", "--text", "Hello.", "--verify", tmp_path=tmp_path, MODEL_PATH=str(demo_bundle.root))
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "ASR_NOT_CONFIGURED"


@pytest.mark.parametrize("env,message", [({"HIGGS_VERIFY": "on"}, "needs an ASR model"),
                                         ({"HIGGS_MAX_WER": "1.5", "HIGGS_ASR_MODEL": "x"}, "HIGGS_MAX_WER"),
                                         ({"HIGGS_VERIFY_ATTEMPTS": "9", "HIGGS_ASR_MODEL": "x"}, "at most 5"),
                                         ({"HIGGS_VERIFY": "maybe", "HIGGS_ASR_MODEL": "x"}, "HIGGS_VERIFY")])
def test_bad_settings_stop_at_start(env, message, tmp_path):
    result = higgs_tts("voices", tmp_path=tmp_path, **env)
    assert result.returncode == 2 and message in result.stderr
