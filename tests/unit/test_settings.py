"""Settings read from the environment for the features of this change: batch size, caches,
API keys (inline or from a file, never printed), the shared voice library."""

import logging

import pytest

from adapters.fake import InMemoryVoiceLibrary
from app.container import _warm_voices
from app.settings import Settings, read_api_keys


def test_defaults():
    settings = Settings.from_env({})
    assert settings.max_batch == 8 and settings.prefix_cache_mb == 512 and settings.result_cache is False
    assert settings.api_keys == () and settings.voices_s3_uri is None and settings.warm_voices == ()


def test_values_are_read_and_checked():
    settings = Settings.from_env({"HIGGS_MAX_BATCH": "16", "HIGGS_PREFIX_CACHE_MB": "0", "HIGGS_RESULT_CACHE": "on",
                                  "HIGGS_WARM_VOICES": " belinda, en_man ,", "HIGGS_API_KEYS": "sk-a, sk-b",
                                  "HIGGS_VOICES_S3_URI": "s3://b/p", "PORT": "9000"})
    assert (settings.max_batch, settings.prefix_cache_mb, settings.result_cache) == (16, 0, True)
    assert settings.warm_voices == ("belinda", "en_man") and settings.api_keys == ("sk-a", "sk-b")
    assert settings.voices_s3_uri == "s3://b/p" and settings.http_port == 9000
    assert "sk-a" not in repr(settings)
    for name, value in [("HIGGS_MAX_BATCH", "0"), ("HIGGS_MAX_BATCH", "x"), ("HIGGS_PREFIX_CACHE_MB", "-1"),
                        ("HIGGS_API_KEYS", " , ")]:
        with pytest.raises(ValueError):
            Settings.from_env({name: value})


def test_api_keys_from_a_file(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# comment\n\nsk-one\n  sk-two  \n")
    assert read_api_keys(str(keys)) == ("sk-one", "sk-two")


def test_a_warm_voice_that_does_not_exist_is_skipped_and_said(caplog):
    caplog.set_level(logging.WARNING)
    found = _warm_voices(InMemoryVoiceLibrary.with_demo_voices(), ("belinda", "typo", "en_man"))
    assert [v.name for v in found] == ["belinda", "en_man"] and "typo is skipped" in caplog.text


def test_an_empty_environment_gives_exactly_the_declared_defaults():
    assert Settings.from_env({}) == Settings()


def _env_settings():
    from dataclasses import fields

    return [(f.name, name, f.metadata["parse"]) for f in fields(Settings) for name in f.metadata.get("env", ())]


def test_every_setting_is_in_the_configuration_reference():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [name for _, name, _ in _env_settings() if f"`{name}`" not in readme]
    assert not missing, f"settings docs/configuration.md does not list: {missing}"


@pytest.mark.parametrize("field_name, name", [(f, n) for f, n, parse in _env_settings()
                                              if parse.__name__ in ("_positive", "_non_negative", "_port",
                                                                    "_number")])
@pytest.mark.parametrize("value", ["x", "-1", "1e999x", "٣"])
def test_a_bad_number_names_its_variable(field_name, name, value):
    with pytest.raises(ValueError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)


@pytest.mark.parametrize("name, value", [("HIGGS_ENGINE", "gpu"), ("HIGGS_STORE", "ftp"),
                                         ("MODEL_PATH", "hf://only-org"), ("MODEL_PATH", "hf:///x")])
def test_a_bad_choice_names_its_variable(name, value):
    with pytest.raises(ValueError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)


def test_alternative_names_and_empty_values():
    settings = Settings.from_env({"BUCKET_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_REGION": "eu-west-1",
                                  "S3_KEY_PREFIX": "", "HIGGS_MAX_BATCH": "", "MODEL_PATH": "hf://org/name@abc"})
    assert settings.s3_endpoint_url == "http://127.0.0.1:1" and settings.aws_region == "eu-west-1"
    assert settings.s3_key_prefix == "" and settings.max_batch == 8  # an empty prefix is a value; an empty number not
    assert (settings.hub_repo, settings.hub_revision, str(settings.model_path)) == (
        "org/name", "abc", "/runpod-volume/higgs_audio")


def _readme_defaults() -> dict[str, str]:
    """`| `NAME` | default | meaning |` rows of docs/configuration.md's table."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", readme, re.M)
    return {name: cell.strip().strip("`") for name, cell in rows}


def test_the_configuration_reference_states_the_defaults_the_code_has():
    from dataclasses import fields

    from adapters.runpod import WorkerOptions
    from adapters.s3 import S3Config

    stated = _readme_defaults()
    checked = 0
    for f in fields(Settings):
        for name in f.metadata.get("env", ())[:1]:
            if name in stated and isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
                assert float(stated[name]) == f.default, name
                checked += 1
    adapter_defaults = {"S3_MULTIPART_THRESHOLD_MB": S3Config.multipart_threshold / 2**20,
                        "S3_PRESIGN_EXPIRY": S3Config.presign_expiry, "S3_MAX_ATTEMPTS": S3Config.max_attempts,
                        "RUNPOD_INLINE_AUDIO_MAX_MB": WorkerOptions.inline_audio_limit / 1e6,
                        "RUNPOD_PROGRESS_INTERVAL": WorkerOptions.progress_interval}
    for name, value in adapter_defaults.items():
        assert float(stated[name]) == value, name
    assert checked >= 3  # the engine's sizes at least


@pytest.mark.parametrize("name,value,field,expected", [
    ("HIGGS_DTYPE", "bfloat16", "dtype", "bfloat16"), ("HIGGS_DTYPE", "float32", "dtype", "float32"),
    ("HIGGS_CUDA_GRAPHS", "off", "cuda_graphs", "off"), ("HIGGS_CUDA_GRAPHS", "on", "cuda_graphs", "on"),
    ("HIGGS_GPU_MEMORY_FRACTION", "1", "gpu_memory_fraction", 1.0),
    ("HIGGS_GPU_MEMORY_FRACTION", "0.5", "gpu_memory_fraction", 0.5),
])
def test_the_gpu_settings_are_read(name, value, field, expected):
    assert getattr(Settings.from_env({name: value}), field) == expected


def test_the_gpu_settings_default_to_auto_and_nine_tenths():
    settings = Settings.from_env({})
    assert (settings.dtype, settings.cuda_graphs, settings.gpu_memory_fraction) == ("auto", "auto", 0.9)


@pytest.mark.parametrize("name,value", [
    ("HIGGS_DTYPE", "bf16"), ("HIGGS_DTYPE", "int8"), ("HIGGS_DTYPE", "torch.float16"), ("HIGGS_CUDA_GRAPHS", "yes"),
    ("HIGGS_CUDA_GRAPHS", "true"), ("HIGGS_GPU_MEMORY_FRACTION", "0"), ("HIGGS_GPU_MEMORY_FRACTION", "-0.1"),
    ("HIGGS_GPU_MEMORY_FRACTION", "1.01"), ("HIGGS_GPU_MEMORY_FRACTION", "nan"), ("HIGGS_GPU_MEMORY_FRACTION", "inf"),
    ("HIGGS_GPU_MEMORY_FRACTION", "90%"),
])
def test_a_wrong_gpu_setting_stops_the_start_with_its_name(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_an_empty_gpu_setting_is_its_default():
    settings = Settings.from_env({"HIGGS_DTYPE": " ", "HIGGS_CUDA_GRAPHS": "", "HIGGS_GPU_MEMORY_FRACTION": ""})
    assert (settings.dtype, settings.cuda_graphs, settings.gpu_memory_fraction) == ("auto", "auto", 0.9)
