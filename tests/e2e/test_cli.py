"""The `higgs-tts` command as a user runs it, in a subprocess."""

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def higgs_tts(*args, env=None, tmp_path):
    full_env = {**os.environ, "HIGGS_ENGINE": "fake", "OUTPUT_DIR": str(tmp_path / "store"),
                **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=full_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_synth_writes_a_24khz_wav_and_a_json_summary(tmp_path):
    out = tmp_path / "x.wav"
    result = higgs_tts("synth", "--text", "Hello", "--out", str(out), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["success"] is True and summary["out"] == str(out)
    with wave.open(str(out)) as wav:
        assert wav.getframerate() == 24000 and wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getnframes() == round(summary["duration_seconds"] * 24000) > 0
    assert "done:" in result.stderr


def test_synth_stores_in_a_bucket_when_asked(tmp_path):
    out = tmp_path / "y.wav"
    result = higgs_tts("synth", "--text", "Hello there", "--out", str(out), "--bucket", "tts-out",
                       "--key", "a/y.wav", tmp_path=tmp_path)
    summary = json.loads(result.stdout)
    stored = tmp_path / "store" / "tts-out" / "a" / "y.wav"
    assert summary["audio_url"] == stored.as_uri()
    assert stored.read_bytes() == out.read_bytes()
    assert json.loads((stored.parent / "y.wav.json").read_text())["request_id"] == summary["request_id"]
    again = higgs_tts("synth", "--text", "Other words", "--out", str(out), "--bucket", "tts-out",
                      "--key", "a/y.wav", tmp_path=tmp_path)
    assert again.returncode == 2 and json.loads(again.stdout)["error"]["code"] == "OBJECT_EXISTS"
    assert json.loads((stored.parent / "y.wav.json").read_text())["request_id"] == summary["request_id"]
    replaced = higgs_tts("synth", "--text", "Other words", "--out", str(out), "--bucket", "tts-out",
                         "--key", "a/y.wav", "--overwrite", tmp_path=tmp_path)
    assert replaced.returncode == 0
    assert json.loads((stored.parent / "y.wav.json").read_text())["request"]["text"] == "Other words"


def test_bad_input_gives_a_structured_error_and_exit_2(tmp_path):
    result = higgs_tts("synth", "--text", "hi", "--top-p", "0", tmp_path=tmp_path)
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "INVALID_TOP_P"


def test_voices_lists_json(tmp_path):
    result = higgs_tts("voices", tmp_path=tmp_path)
    assert result.returncode == 0
    assert {"belinda", "en_man"} <= {v["name"] for v in json.loads(result.stdout)}


def test_bad_engine_setting_is_a_clear_configuration_error(tmp_path):
    result = higgs_tts("voices", env={"HIGGS_ENGINE": "gpu9000"}, tmp_path=tmp_path)
    assert result.returncode == 2 and "HIGGS_ENGINE" in result.stderr
