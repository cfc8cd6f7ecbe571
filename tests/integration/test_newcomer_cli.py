"""What a new user runs into first, each reproduced: a wrong MODEL_PATH, `stream --format`, MP3
reference clips, S3 from the command line, the result cache for `synth`, console spans on
stdout, a port in use, the help's defaults."""

import io
import json
import socket
import subprocess
import sys
from array import array
from pathlib import Path

import pytest
import soundfile
from dependency_injector import providers

from adapters.fake import InMemoryObjectStore
from adapters.soundfile import SoundfileEncoder
from app.cli import main
from app.container import build_container
from app.settings import Settings
from tests.integration.grpc_helpers import stream_cli

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, tmp_path, **env):
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "HIGGS_DEVICE": "cpu",
            "HIGGS_STORE": "none", **env}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=full, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("command", [["synth", "--text", "Hi.", "--voice", "belinda"], ["synth", "--text", "Hi."],
                                     ["voices"]])
def test_a_wrong_model_path_is_model_not_found_and_names_where_it_looked(command, tmp_path):
    result = cli(*command, tmp_path=tmp_path, MODEL_PATH=str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "MODEL_NOT_FOUND"
    assert str(tmp_path / "nowhere" / "bosonai" / "higgs-audio-v2-generation-3B-base") in result.stderr
    assert "higgs-tts demo-model" in result.stderr and "export MODEL_PATH=" in result.stderr


def test_demo_model_says_how_to_use_it(tmp_path):
    result = cli("demo-model", str(tmp_path / "demo"), tmp_path=tmp_path)
    assert result.returncode == 0 and f"export MODEL_PATH={tmp_path / 'demo'}" in result.stderr


def test_an_unknown_voice_says_where_voices_are_read_from(demo_bundle, tmp_path):
    result = cli("synth", "--text", "Hi.", "--voice", "nobody", tmp_path=tmp_path, MODEL_PATH=str(demo_bundle.root))
    assert json.loads(result.stdout)["error"]["code"] == "UNKNOWN_VOICE"
    assert f"voices are read from {demo_bundle.voices}" in result.stderr


@pytest.mark.parametrize("fmt,magic", [("mp3", (b"ID3", b"\xff\xfb", b"\xff\xf3")), ("flac", (b"fLaC",)),
                                       ("ogg", (b"OggS",)), ("wav", (b"RIFF",))])
def test_stream_writes_the_format_it_is_asked_for(server, tmp_path, capsys, fmt, magic):
    out = tmp_path / f"x.{fmt}"
    code, summary = stream_cli(capsys, "--target", server.address, "--text", "Hello there.", "--format", fmt,
                               "--out", str(out))
    assert code == 0, summary
    data = out.read_bytes()
    assert data.startswith(magic), data[:8]
    assert not list(tmp_path.glob("*.partial.wav"))
    samples, rate = soundfile.read(io.BytesIO(data))
    assert rate == 24000 and len(samples) / rate == pytest.approx(summary["audio_s"], abs=0.1)


def test_an_mp3_reference_clip_is_refused_on_the_command_line_as_over_http(demo_bundle, tmp_path):
    tone = array("f", (0.2 * ((i // 40) % 2) for i in range(24000)))
    clip = tmp_path / "me.mp3"
    clip.write_bytes(SoundfileEncoder().encode(tone, 24000, "mp3").data)
    result = cli("synth", "--text", "Hi.", "--ref-audio", str(clip), "--ref-text", "a tone", tmp_path=tmp_path,
                 MODEL_PATH=str(demo_bundle.root))
    error = json.loads(result.stdout)["error"]
    assert result.returncode == 2 and error["code"] == "INVALID_REFERENCE_AUDIO"
    assert "WAV, FLAC or OGG" in error["message"] and "object at 0x" not in error["message"]


def test_s3_without_credentials_is_refused_before_any_work(tmp_path, seaweed):
    result = cli("synth", "--text", "Hi.", "--bucket", "my-bucket", tmp_path=tmp_path, HIGGS_ENGINE="fake",
                 HIGGS_STORE="s3", S3_ENDPOINT_URL=seaweed.endpoint, AWS_EC2_METADATA_DISABLED="true",
                 AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    error = json.loads(result.stdout)["error"]
    assert result.returncode == 1 and error["code"] == "S3_ACCESS_DENIED"
    assert "credentials" in error["message"] and "Traceback" not in result.stderr
    assert "generating" not in result.stderr  # refused before the progress line


def test_a_bucket_without_s3_settings_says_it_is_a_folder(tmp_path):
    result = cli("synth", "--text", "Hi.", "--bucket", "my-bucket", tmp_path=tmp_path, HIGGS_ENGINE="fake",
                 HIGGS_STORE="auto", OUTPUT_DIR=str(tmp_path / "out"))
    assert result.returncode == 0
    assert f"my-bucket is a folder under {tmp_path / 'out'}" in result.stderr


def test_a_failed_upload_keeps_the_audio_locally(tmp_path, capsys):
    container = build_container(Settings(engine="fake", store="s3"))
    container.object_store.override(providers.Object(InMemoryObjectStore(fail_on=".wav")))
    out = tmp_path / "kept.wav"
    code = main(["synth", "--text", "Hello there.", "--bucket", "my-bucket", "--out", str(out)], container=container)
    captured = capsys.readouterr()
    assert code == 1 and json.loads(captured.out)["error"]["code"] == "S3_UPLOAD_FAILED"
    assert f"the audio is in {out}" in captured.err
    samples, rate = soundfile.read(out)
    assert rate == 24000 and len(samples) > 0


def test_the_result_cache_answers_a_seeded_repeat_of_synth(demo_bundle, tmp_path):
    env = dict(MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="local", OUTPUT_DIR=str(tmp_path / "store"),
               HIGGS_RESULT_CACHE="on")
    runs = [cli("synth", "--text", "Hello there.", "--seed", "4", "--max-new-tokens", "40", "--out",
                str(tmp_path / f"{i}.wav"), tmp_path=tmp_path, **env) for i in range(2)]
    summaries = [json.loads(r.stdout) for r in runs]
    assert [s["metadata"]["cache"] for s in summaries] == ["miss", "hit"]
    assert (tmp_path / "0.wav").read_bytes() == (tmp_path / "1.wav").read_bytes()


def test_console_spans_go_to_stderr_and_stdout_stays_one_json_line(tmp_path):
    result = cli("synth", "--text", "Hello.", "--out", str(tmp_path / "x.wav"), tmp_path=tmp_path,
                 HIGGS_ENGINE="fake", OTEL_TRACES_EXPORTER="console")
    assert result.returncode == 0
    assert json.loads(result.stdout)["success"] is True
    assert '"name": "speech.generate"' in result.stderr


def test_a_port_in_use_is_said_once_before_anything_starts(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = cli("serve", "http", "--host", "127.0.0.1", "--port", str(port), tmp_path=tmp_path,
                     HIGGS_ENGINE="fake")
    finally:
        taken.close()
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"error: cannot serve HTTP on 127.0.0.1:{port}: Address already in use")
    assert '"listening"' not in result.stdout


def test_the_local_api_port_in_use_is_said_before_the_model_loads(demo_bundle, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = cli("serve", "runpod", "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port),
                     tmp_path=tmp_path, MODEL_PATH=str(demo_bundle.root), RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true")
    finally:
        taken.close()
    assert result.returncode == 1 and "Address already in use" in result.stderr
    assert "loaded" not in result.stderr  # said before the model was loaded


def test_help_shows_the_defaults():
    from app.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["synth"]
    text = sub.format_help()
    assert "(default: 0.3)" in text and "(default: 2048)" in text and "(default: 50)" in text
    assert "{request_id}.{format}" in text and "decode steps per text chunk" in text


def test_every_option_with_a_default_says_it_in_help():
    """Every command's --help, every option with a default (0 included: 0 == False in Python)."""
    import argparse

    from app.cli import build_parser
    from app.cli_reference import commands

    unsaid = []
    for name, _, parser in commands(build_parser(), "higgs-tts"):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction) or action.nargs == 0:
                continue
            if action.default is None or action.default is argparse.SUPPRESS:
                continue
            if f"default: {action.default}" not in text and "default:" not in " ".join((action.help or "").split()):
                unsaid.append(f"{name} {action.option_strings[0]}")
    assert unsaid == []
