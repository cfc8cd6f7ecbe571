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
