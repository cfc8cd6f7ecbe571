"""Parity with upstream (boson-multimodal 0.1.1), on fixtures its own code made
(tools/upstream_parity/make_fixtures.py): tiny random models saved in the ORIGINAL bosonai
layout, loaded here through this project's loader and runtime, converted by key mapping."""

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file

from boson_multimodal.convert import convert_bundle, detect_layout
from boson_multimodal.generate import FrameDecoder, SamplingConfig
from boson_multimodal.layout import ModelPaths
from boson_multimodal.prompt import Turn, system_turn, voice_turns
from boson_multimodal.runtime import HiggsAudio, Synthesis, VoiceClip

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"
GREEDY = SamplingConfig(temperature=0, ras_win_len=0)
TOLERANCE = 1e-4


def original_volume(root: Path) -> ModelPaths:
    paths = ModelPaths.under(root)
    shutil.copytree(FIXTURES / "generation", paths.generation)
    shutil.copytree(FIXTURES / "tokenizer", paths.tokenizer)
    paths.voices.mkdir(parents=True)
    clip = load_file(str(FIXTURES / "tokenizer.safetensors"))["clip"].numpy()
    soundfile.write(paths.voices / "upstream.wav", clip, 24000, subtype="FLOAT")
    meta = json.loads((FIXTURES / "generation.json").read_text())
    (paths.voices / "upstream.txt").write_text(meta["ref_transcript"] + "\n")
    return paths


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    return original_volume(tmp_path_factory.mktemp("original-volume"))


@pytest.fixture(scope="module")
def runtime(volume):
    return HiggsAudio.load(volume, device="cpu", max_cache_len=2048)


@pytest.fixture(scope="module")
def generation():
    return load_file(str(FIXTURES / "generation.safetensors")), json.loads((FIXTURES / "generation.json").read_text())


@pytest.fixture(scope="module")
def tokenizer_fixture():
    return load_file(str(FIXTURES / "tokenizer.safetensors"))


def upstream_prompt(runtime, generation):
    tensors, meta = generation
    turns = [system_turn(meta["scene"])]
    turns += voice_turns([(meta["ref_transcript"], tensors["ref_codes"].T)], multi_speaker=False)
    return runtime.prompts.build(turns + [Turn("user", meta["text"])])


def greedy(runtime, prompt, frames, model=None):
    logits = {}
    decoder = FrameDecoder(model or runtime.bundle.model, max_cache_len=2048) if model else runtime.decoder
    decoder.logits_hook = lambda step, value: logits.setdefault(step, value.clone())
    try:
        out = torch.cat(list(decoder.generate(prompt, GREEDY, max_frames=frames)))
    finally:
        decoder.logits_hook = None
    return out, logits


def test_both_original_components_are_detected_and_reported(volume, runtime):
    assert detect_layout(volume.generation) == "original"
    assert detect_layout(volume.tokenizer) == "original"
    info = runtime.bundle.info
    assert info["layout"] == "original" and info["tokenizer_layout"] == "original"


def test_prompt_matches_upstreams_tokens(runtime, generation):
    """Upstream keeps one <|AUDIO_OUT|> per clip and expands it inside the model; here every
    frame has its placeholder. Collapsed, the token ids are upstream's exactly."""
    tensors, _ = generation
    prompt = upstream_prompt(runtime, generation)
    assert torch.equal(prompt.audio_frames, tensors["prompt_audio"].T)
    config = runtime.bundle.model.config
    placeholders = {config.audio_token_id, config.audio_delay_token_id}
    ids = prompt.input_ids[0].tolist()
    collapsed = []
    for token in ids:
        if token in placeholders:
            if collapsed[-1] != config.audio_token_id:
                collapsed.append(config.audio_token_id)
        else:
            collapsed.append(token)
    assert collapsed == tensors["prompt_ids"].tolist()


def test_greedy_codes_and_logits_equal_upstreams(runtime, generation):
    tensors, meta = generation
    frames, logits = greedy(runtime, upstream_prompt(runtime, generation), meta["frames"])
    assert frames.shape == tensors["frames"].shape
    assert torch.equal(frames, tensors["frames"])
    # upstream forces the first frame (all BOS) without logits: its step k scores frame k
    for k in range(1, 1 + tensors["step_logits"].shape[0]):
        assert (logits[k] - tensors["step_logits"][k - 1]).abs().max().item() < TOLERANCE


def test_audio_tokenizer_codes_and_waveform_equal_upstreams(runtime, volume, tokenizer_fixture):
    clip, codes, waveform = tokenizer_fixture["clip"], tokenizer_fixture["codes"], tokenizer_fixture["waveform"]
    assert torch.equal(runtime.codec.encode(clip.numpy()), codes.T)
    # through the voice library's path: a clip file read, resampled if needed, encoded once
    data = (volume.voices / "upstream.wav").read_bytes()
    voice = VoiceClip("upstream", "x", data, hashlib.sha256(data).hexdigest())
    assert torch.equal(runtime.reference_codes(voice), codes.T)
    decoded = runtime.codec.decode(codes.T)
    assert decoded.shape == tuple(waveform.shape)
    assert np.abs(decoded - waveform.numpy()).max() < TOLERANCE


def test_semantic_features_match_upstreams_torchaudio_resampling(runtime, tokenizer_fixture):
    """Upstream resamples 24 -> 16 kHz with torchaudio for HuBERT; here the built-in resampler
    stands in when torchaudio cannot be imported."""
    features = runtime.bundle.audio_tokenizer._extract_semantic_features(tokenizer_fixture["clip"][None, None])
    assert (features[0] - tokenizer_fixture["semantic_features"]).abs().max().item() < TOLERANCE


def test_the_engine_speaks_from_the_original_layout(runtime):
    events = list(runtime.stream(Synthesis("Hello from the original layout.", max_new_tokens=40,
                                           sampling=SamplingConfig(seed=1))))
    audio = sum(len(e.samples) for e in events if hasattr(e, "samples"))
    assert audio > 0 and events[-1].frames > 0


def test_convert_once_writes_a_native_volume_with_the_same_output(runtime, volume, generation, tmp_path):
    converted = ModelPaths.under(tmp_path / "native")
    done = convert_bundle(volume, converted)
    assert done["generation"] == done["tokenizer"] == "converted" and done["voices"] == ["upstream"]
    assert detect_layout(converted.generation) == detect_layout(converted.tokenizer) == "transformers"
    native = HiggsAudio.load(converted, device="cpu", max_cache_len=2048)
    assert native.bundle.info["layout"] == "transformers"
    tensors, meta = generation
    frames, _ = greedy(native, upstream_prompt(native, generation), meta["frames"])
    assert torch.equal(frames, tensors["frames"])
    codes = load_file(str(FIXTURES / "tokenizer.safetensors"))["codes"]
    assert np.abs(native.codec.decode(codes.T) - runtime.codec.decode(codes.T)).max() == 0
    with pytest.raises(FileExistsError):
        convert_bundle(volume, converted)


def test_unsupported_original_variants_are_refused_with_reasons(tmp_path):
    from boson_multimodal.convert import ConversionError, generation_config

    raw = json.loads((FIXTURES / "generation" / "config.json").read_text())
    raw.update(audio_dual_ffn_layers=[0], use_audio_out_self_attention=True)
    with pytest.raises(ConversionError) as caught:
        generation_config(raw)
    assert "audio_dual_ffn_layers" in str(caught.value) and "use_audio_out_self_attention" in str(caught.value)


def test_a_broken_original_checkpoint_is_a_model_load_error(tmp_path):
    from boson_multimodal.loader import ModelLoadError, load_bundle

    paths = original_volume(tmp_path / "vol")
    weights = paths.generation / "model.safetensors"
    from safetensors.torch import save_file

    state = load_file(str(weights))
    state["mystery.weight"] = torch.zeros(1)
    save_file(state, str(weights))
    with pytest.raises(ModelLoadError) as caught:
        load_bundle(paths, device="cpu")
    assert "mystery.weight" in str(caught.value)


def test_cli_convert(tmp_path, capsys):
    from app.cli import main

    src = original_volume(tmp_path / "src").root
    assert main(["convert", str(src), str(src)]) == 2
    assert main(["convert", str(src), str(tmp_path / "dst")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["generation"] == "converted" and summary["voices"] == ["upstream"]
    assert main(["convert", str(src), str(tmp_path / "dst")]) == 1  # never over a volume
    assert "not empty" in capsys.readouterr().err
