"""HiggsSpeechEngine through the use case and the CLI, on the demo bundle."""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from adapters.fake import InMemoryObjectStore
from adapters.higgs import HiggsSpeechEngine
from adapters.voices import VolumeVoiceLibrary
from boson_multimodal.layout import ModelPaths
from core.domain.audio import WavEncoder
from core.domain.errors import DomainError
from core.domain.events import SpeechCompleted, SpeechFailed
from core.domain.request import InlineVoice, NamedVoice, Sampling, SpeechRequest
from core.service.archive import AudioArchive
from core.service.generate_speech import GenerateSpeech

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine(demo_bundle):
    engine = HiggsSpeechEngine(demo_bundle, device="cpu")
    yield engine
    engine.close()


def use_case(engine, bundle):
    return GenerateSpeech(engine, VolumeVoiceLibrary(bundle.voices), WavEncoder(), AudioArchive(InMemoryObjectStore()))


def test_lazy_load_then_warm_up(demo_bundle):
    engine = HiggsSpeechEngine(demo_bundle, device="cpu")
    assert not engine.is_ready() and engine.describe().loaded is False
    engine.warm_up()
    assert engine.is_ready()
    info = engine.describe()
    assert info.layout == "transformers" and info.details["demo"] is True and info.device == "cpu"
    assert info.sizing["max_batch"] == engine.max_batch and "max_batch" not in info.identity()
    engine.close()
    assert not engine.is_ready()


def test_missing_weights_are_a_model_error_whose_path_only_the_log_names(tmp_path, caplog):
    engine = HiggsSpeechEngine(ModelPaths.under(tmp_path / "empty"), device="cpu")
    with pytest.raises(DomainError) as info:
        list(engine.speak(SpeechRequest("Hi.").synthesis, [], threading.Event()))
    error = info.value
    assert error.type.value == "model_error" and error.code == "MODEL_NOT_FOUND"
    assert str(tmp_path) not in json.dumps(error.to_dict())  # callers never see the worker's filesystem
    assert str(tmp_path / "empty") in caplog.text


def test_corrupt_weights_are_a_model_error(tmp_path, demo_bundle):
    root = tmp_path / "corrupt"
    shutil.copytree(demo_bundle.root, root)
    paths = ModelPaths.under(root)
    (paths.generation / "model.safetensors").write_bytes(b"not a safetensors file")
    engine = HiggsSpeechEngine(paths, device="cpu")
    with pytest.raises(DomainError) as info:
        engine.warm_up()
    assert info.value.type.value == "model_error" and info.value.code == "MODEL_LOAD_FAILED"


def test_bad_reference_audio_fails_the_request_and_the_engine_stays_usable(engine, demo_bundle):
    generate = use_case(engine, demo_bundle)
    bad = SpeechRequest("Hello.", voices=(InlineVoice(b"RIFF-but-not-really", "words"),))
    failed = list(generate(bad))[-1]
    assert isinstance(failed, SpeechFailed)
    assert failed.error.code == "INVALID_REFERENCE_AUDIO" and failed.error.type.value == "validation_error"
    good = SpeechRequest("Hello.", voices=(NamedVoice("belinda"),), sampling=Sampling(seed=1, max_new_tokens=30))
    assert isinstance(list(generate(good))[-1], SpeechCompleted)


def test_inline_voice_clones_from_sent_audio(engine, demo_bundle):
    generate = use_case(engine, demo_bundle)
    clip = (demo_bundle.voices / "en_man.wav").read_bytes()
    inline = SpeechRequest("Hello.", voices=(InlineVoice(clip, "The sun rises."),),
                           sampling=Sampling(seed=3, max_new_tokens=30))
    named = SpeechRequest("Hello.", voices=(NamedVoice("en_man"),), sampling=Sampling(seed=3, max_new_tokens=30))
    a, b = list(generate(inline))[-1], list(generate(named))[-1]
    assert a.metadata["prompt_tokens"] > 0
    # same clip, other transcript: another prompt, so (almost surely) other audio
    assert a.audio.data != b.audio.data or a.metadata["prompt_tokens"] != b.metadata["prompt_tokens"]


def test_completed_metadata_says_what_was_loaded_and_why_it_stopped(engine, demo_bundle):
    done = list(use_case(engine, demo_bundle)(SpeechRequest(
        "Hello there.", voices=(NamedVoice("belinda"),), scene_prompt="A quiet room.",
        sampling=Sampling(seed=2, max_new_tokens=25))))[-1]
    assert done.metadata["model"]["layout"] == "transformers"
    assert done.stop_reason in ("max_new_tokens", "duration_bound", "end_token", "silence")
    assert done.stop_reason == "max_new_tokens"  # the demo model does not end by itself
    # max_new_tokens counts decode steps as upstream does: the BOS frame, 7 of delay and the
    # dropped last time step leave 25 - 9 audio frames
    assert done.frames == 16 and done.duration_seconds == pytest.approx(0.64)


def higgs_tts(*args, tmp_path, env=None):
    full = {**os.environ, "HIGGS_ENGINE": "higgs", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=full, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_cli_synth_on_the_demo_bundle_is_seeded(tmp_path, demo_bundle):
    env = {"MODEL_PATH": str(demo_bundle.root)}
    common = ["synth", "--text", "Hello there, this is a test.", "--voice", "belinda",
              "--scene", "A quiet room.", "--max-new-tokens", "60"]
    outs = []
    for seed, name in ((7, "a.wav"), (7, "b.wav"), (8, "c.wav")):
        result = higgs_tts(*common, "--seed", str(seed), "--out", name, tmp_path=tmp_path, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["sample_rate"] == 24000
        assert "DEMO bundle" in result.stderr and "RANDOM weights" in result.stderr
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    import wave

    with wave.open(str(tmp_path / "a.wav")) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 0


def test_cli_falls_back_to_a_demo_bundle_it_writes(tmp_path):
    env = {"MODEL_PATH": str(tmp_path / "no-weights"), "HIGGS_DEMO_FALLBACK": "1",
           "HIGGS_DEMO_MODEL_DIR": str(tmp_path / "demo")}
    result = higgs_tts("synth", "--text", "Hi.", "--voice", "en_man", "--seed", "1", "--out", "x.wav",
                       tmp_path=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "demo" / "DEMO_BUNDLE.txt").is_file()
    assert "RANDOM weights" in result.stderr


def test_cli_without_weights_or_fallback_explains_the_volume(tmp_path):
    result = higgs_tts("synth", "--text", "Hi.", "--out", "x.wav", tmp_path=tmp_path,
                       env={"MODEL_PATH": str(tmp_path / "nothing")})
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "MODEL_NOT_FOUND" and str(tmp_path / "nothing") in result.stderr


def test_cli_demo_model_writes_a_small_bundle(tmp_path):
    result = higgs_tts("demo-model", str(tmp_path / "bundle"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["voices"] == ["belinda", "en_man"]
    assert 1_000_000 < summary["bytes"] < 20_000_000
    assert ModelPaths.under(tmp_path / "bundle").has_weights()


def test_duration_bound_stops_a_model_that_does_not_end(engine, demo_bundle):
    done = list(use_case(engine, demo_bundle)(SpeechRequest("Hi.", sampling=Sampling(seed=1))))[-1]
    assert done.stop_reason == "duration_bound"
    assert done.frames == 95  # 25 fps x (3 s + 0.8 s per word), far below max_new_tokens 2048


def test_a_text_that_cannot_fit_the_cache_is_refused_before_any_work(demo_bundle):
    small = HiggsSpeechEngine(demo_bundle, device="cpu", max_cache_len=128)
    for text in ("word " * 100, "Hi."):
        events = list(use_case(small, demo_bundle)(SpeechRequest(text)))
        assert len(events) == 1 and isinstance(events[0], SpeechFailed)  # refused before SpeechStarted
        assert events[0].error.code == "TEXT_TOO_LONG" and "KV-cache positions" in events[0].error.message


def test_a_text_longer_than_the_cache_is_split_to_fit_it(demo_bundle):
    """Auto chunking sizes chunks for the cache: 100 words through a 320-position cache."""
    small = HiggsSpeechEngine(demo_bundle, device="cpu", max_cache_len=320)
    done = list(use_case(small, demo_bundle)(SpeechRequest("word " * 100, sampling=Sampling(seed=1))))[-1]
    assert isinstance(done, SpeechCompleted)
    from boson_multimodal.chunking import speech_frames
    from boson_multimodal.runtime import SpeechJob

    chunks = small._runtime.plan(SpeechJob("word " * 100)).chunks
    assert len(chunks) > 5 and " ".join(chunks).split() == ["word"] * 99 + ["word."]
    # every chunk had room for a slow reading of it (the demo model never ends: it runs to the cache's end)
    assert len(done.metadata["chunk_frames"]) == len(chunks)
    assert all(frames >= speech_frames(chunk) for frames, chunk in zip(done.metadata["chunk_frames"], chunks))


def _engine_with(demo_bundle, break_runtime):
    from boson_multimodal.runtime import HiggsAudio

    def load(paths, **kwargs):
        runtime = HiggsAudio.load(paths, **kwargs)
        break_runtime(runtime)
        return runtime

    return HiggsSpeechEngine(demo_bundle, device="cpu", loader=load)


def test_nan_logits_are_an_inference_error(demo_bundle):
    import torch

    def poison(runtime):
        with torch.no_grad():
            runtime.bundle.model.audio_lm_head.weight[3, 0] = float("nan")

    failed = list(use_case(_engine_with(demo_bundle, poison), demo_bundle)(SpeechRequest("Hi.")))[-1]
    assert failed.error.type.value == "inference_error" and failed.error.code == "NUMERICAL_ERROR"


def test_out_of_memory_is_an_inference_error_and_the_next_request_runs(demo_bundle):
    import torch

    calls = {"n": 0}

    def flaky(runtime):
        original = runtime.speak

        def stream(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 1:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return original(*args, **kwargs)

        runtime.speak = stream

    generate = use_case(_engine_with(demo_bundle, flaky), demo_bundle)
    failed = list(generate(SpeechRequest("Hi.")))[-1]
    assert failed.error.type.value == "inference_error" and failed.error.code == "OUT_OF_MEMORY"
    assert isinstance(list(generate(SpeechRequest("Hi.", sampling=Sampling(seed=1))))[-1], SpeechCompleted)
