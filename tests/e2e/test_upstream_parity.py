"""Parity with upstream (boson-multimodal 0.1.1), on fixtures its own code made
(tools/upstream_parity/make_fixtures.py): tiny random models saved in the ORIGINAL bosonai layout,
voice clips, and what upstream computes for each request shape. Everything here goes through
this project's loader (converting by key mapping) and runtime.

Cases: reference clips of every length class mod 960 and at 8/16/22.05/44.1/48 kHz (one stereo);
the prompt matrix {0, 1, 2 voices} x {scene, none} x {[SPEAKERn] tags, none}; a 420-frame stream
across KV buckets; streams that end with codebook 0 first, with codebook 3 first, a dialogue
that ends; two chunks with the first chunk's audio in the second's prompt. The text tokenizer
has BPE merges; attention is grouped-query (2 query heads per KV head); RoPE is Llama-3 scaled."""

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file, save_file

from boson_multimodal.batch import BatchDecoder
from boson_multimodal.codec import read_clip
from boson_multimodal.convert import convert_bundle, detect_layout
from boson_multimodal.layout import ModelPaths
from boson_multimodal.runtime import AudioOut, Finished, HiggsAudio, SpeechJob, VoiceClip
from boson_multimodal.sampling import SamplingConfig
from boson_multimodal.transcript import normalize_transcript

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"
GREEDY = SamplingConfig(temperature=0, ras_win_len=0)
TOLERANCE = 1e-4
CASES = json.loads((FIXTURES / "generation.json").read_text())
TOKENIZER_META = json.loads((FIXTURES / "tokenizer.json").read_text())
EOS_HEAD = "audio_decoder_proj.audio_lm_head.weight"


@pytest.fixture(scope="module")
def generation():
    return load_file(str(FIXTURES / "generation.safetensors"))


@pytest.fixture(scope="module")
def tokenizer_fixture():
    return load_file(str(FIXTURES / "tokenizer.safetensors"))


def original_volume(root: Path, model: str = "base") -> ModelPaths:
    """A volume in the original layout; `model` names the EOS head rows to patch in."""
    paths = ModelPaths.under(root)
    shutil.copytree(FIXTURES / "generation", paths.generation)
    shutil.copytree(FIXTURES / "tokenizer", paths.tokenizer)
    shutil.copytree(FIXTURES / "voice_prompts", paths.voices)
    if model != "base":
        rows = load_file(str(FIXTURES / "generation.safetensors"))[f"eos_rows/{model}"]
        weights = paths.generation / "model.safetensors"
        state = load_file(str(weights))
        head = state[EOS_HEAD].view(8, 1026, -1)
        head[:, 1025] = rows
        save_file(state, str(weights), metadata={"format": "pt"})
    return paths


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory):
    """One runtime per fixture model, each decoding through 64-position KV buckets so that every
    case crosses bucket switches."""
    loaded = {}
    for model in ("base", "eos_first", "eos_later"):
        paths = original_volume(tmp_path_factory.mktemp(model), model)
        runtime = HiggsAudio.load(paths, device="cpu", max_cache_len=2048)
        runtime.decoder.close()
        # with the prefix cache as deployed: chunked cases and repeated voices reuse prefixes
        runtime.decoder = BatchDecoder(runtime.bundle.model, max_cache_len=2048, smallest_bucket=64,
                                       prefix_cache_bytes=64 << 20)
        loaded[model] = (runtime, paths)
    return loaded


def voice(paths: ModelPaths, name: str) -> VoiceClip:
    data = (paths.voices / f"{name}.wav").read_bytes()
    return VoiceClip(name, (paths.voices / f"{name}.txt").read_text().strip(), data, hashlib.sha256(data).hexdigest())


def synthesis(case: dict, paths: ModelPaths) -> SpeechJob:
    return SpeechJob(
        text=case["text"], voices=[voice(paths, n) for n in case["voices"]], scene=case["scene"],
        sampling=GREEDY, max_new_tokens=case["max_new_tokens"],
        chunk_method="word" if len(case["chunks"]) > 1 else "none",
        chunk_max_word_num=case.get("chunk_max_word_num", 100), stop_on_silence=False,
    )


def collapse(ids: list[int], config) -> list[int]:
    """Upstream keeps one <|AUDIO_OUT|> per clip and expands it inside the model; here every
    frame has its placeholder (the last 7 are the delay token). Collapsed, they compare."""
    placeholders = {config.audio_token_id, config.audio_delay_token_id}
    out: list[int] = []
    for token in ids:
        if token in placeholders:
            if out[-1] != config.audio_token_id:
                out.append(config.audio_token_id)
        else:
            out.append(token)
    return out


class Recorder:
    """What the runtime built and decoded for each chunk: prompts, delayed frames, logits, stats."""

    def __init__(self, runtime: HiggsAudio) -> None:
        self.runtime = runtime
        self.prompts, self.frames, self.logits, self.stats = [], [], [], []

    def __enter__(self):
        runtime = self.runtime
        build, generate = runtime.prompts.build, runtime.decoder.decode

        def record_build(turns, **options):
            prompt = build(turns, **options)
            if turns and turns[-1].role == "user" and turns[-1].text:  # not the planner's empty probe
                self.prompts.append(prompt)
            return prompt

        def record_generate(prompt, sampling, max_frames, cancel=None, sync_every=8, stats=None):
            logits = {}
            self.logits.append(logits)
            self.stats.append(stats)
            runtime.decoder.executor.logits_hook = lambda step, value: logits.setdefault(step, value.clone())
            blocks = list(generate(prompt, sampling, max_frames, cancel, sync_every, stats))
            self.frames.append(torch.cat(blocks))
            yield from blocks

        runtime.prompts.build, runtime.decoder.decode = record_build, record_generate
        self._restore = (build, generate)
        return self

    def __exit__(self, *exc):
        self.runtime.prompts.build, self.runtime.decoder.decode = self._restore
        self.runtime.decoder.executor.logits_hook = None


@pytest.fixture(scope="module")
def outcomes(runtimes):
    """Every case through the whole runtime once: the tests below check its parts."""
    results = {}
    for name, case in CASES.items():
        runtime, paths = runtimes[case["model"]]
        with Recorder(runtime) as recorder:
            events = list(runtime.speak(synthesis(case, paths)))
        audio = np.concatenate([e.samples for e in events if isinstance(e, AudioOut)] or [np.zeros(0, np.float32)])
        results[name] = (recorder, events[-1], audio, runtime)
    return results


# -- reference clips ----------------------------------------------------------------------------


@pytest.mark.parametrize("length", TOKENIZER_META["remainders"])
def test_clip_codes_equal_upstreams_for_every_length_class(runtimes, tokenizer_fixture, length):
    runtime, _ = runtimes["base"]
    clip = tokenizer_fixture["remainder_signal"][:length].numpy()
    assert torch.equal(runtime.codec.encode(clip), tokenizer_fixture[f"remainder/{length}"].T)


@pytest.mark.parametrize("rate,length,channels", TOKENIZER_META["rates"])
def test_clips_at_other_rates_load_and_encode_as_upstreams(runtimes, tokenizer_fixture, rate, length, channels):
    """soxr HQ resampling to ceil(n * 24000 / rate) samples and the channel mean, as librosa
    loads; then the same codes."""
    runtime, _ = runtimes["base"]
    name = f"rate/{rate}/{length}/{channels}"
    data = tokenizer_fixture[f"{name}/signal"].numpy()
    buffer = io.BytesIO()
    soundfile.write(buffer, data.T if channels > 1 else data, rate, format="WAV", subtype="FLOAT")
    loaded = read_clip(buffer.getvalue())
    expected = tokenizer_fixture[f"{name}/loaded"].numpy()
    assert loaded.shape == expected.shape
    assert np.abs(loaded - expected).max() < 1e-6
    clip = VoiceClip("x", "x", buffer.getvalue(), hashlib.sha256(buffer.getvalue()).hexdigest())
    assert torch.equal(runtime.reference_codes(clip), tokenizer_fixture[f"{name}/codes"].T)


def test_decoded_waveform_and_semantic_features_equal_upstreams(runtimes, tokenizer_fixture):
    """The codec decodes upstream's codes to its waveform; HuBERT sees upstream's features
    (upstream resamples 24 -> 16 kHz with torchaudio; here the built-in equivalent stands in)."""
    runtime, _ = runtimes["base"]
    codes, waveform = tokenizer_fixture["codes"], tokenizer_fixture["waveform"]
    assert torch.equal(runtime.codec.encode(tokenizer_fixture["clip"].numpy()), codes.T)
    decoded = runtime.codec.decode(codes.T)
    assert decoded.shape == tuple(waveform.shape)
    assert np.abs(decoded - waveform.numpy()).max() < TOLERANCE
    features = runtime.bundle.audio_tokenizer._extract_semantic_features(tokenizer_fixture["clip"][None, None])
    assert (features[0] - tokenizer_fixture["semantic_features"]).abs().max().item() < TOLERANCE


# -- every request shape --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_transcript_is_normalised_and_chunked_as_upstream(runtimes, name):
    case = CASES[name]
    runtime, paths = runtimes[case["model"]]
    assert normalize_transcript(case["text"]) == case["normalised"]
    assert runtime.plan(synthesis(case, paths)).chunks == case["chunks"]


@pytest.mark.parametrize("name", list(CASES))
def test_voice_codes_and_prompts_equal_upstreams(outcomes, generation, name):
    recorder, _, _, runtime = outcomes[name]
    case = CASES[name]
    config = runtime.bundle.model.config
    for i, voice_name in enumerate(case["voices"]):
        clip_codes = runtime.references._kept[voice_for(runtime, voice_name)]
        assert torch.equal(clip_codes, generation[f"{name}/voice{i}/codes"])
    assert len(recorder.prompts) == len(case["chunks"])
    for i, prompt in enumerate(recorder.prompts):
        assert collapse(prompt.input_ids[0].tolist(), config) == generation[f"{name}/chunk{i}/prompt_ids"].tolist()
        upstream_audio = generation[f"{name}/chunk{i}/prompt_audio"]
        if upstream_audio.numel() == 0:
            assert prompt.audio_frames.numel() == 0
        else:
            assert torch.equal(prompt.audio_frames, upstream_audio)


def voice_for(runtime, voice_name: str) -> str:
    """The code cache key of a fixture voice (its content hash)."""
    data = (FIXTURES / "voice_prompts" / f"{voice_name}.wav").read_bytes()
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", list(CASES))
def test_greedy_frames_and_kept_codes_equal_upstreams(outcomes, generation, name):
    """Every delayed frame up to upstream's last, and the codes kept for audio and for the next
    chunk's prompt (delay reverted, clipped, first and last time step dropped)."""
    recorder, done, _, _ = outcomes[name]
    case = CASES[name]
    assert isinstance(done, Finished)
    for i in range(len(case["chunks"])):
        upstream = generation[f"{name}/chunk{i}/frames"]
        assert recorder.frames[i].shape == upstream.shape
        assert torch.equal(recorder.frames[i], upstream)
        assert torch.equal(done.chunk_codes[i], generation[f"{name}/chunk{i}/kept"])
        assert (done.chunk_codes[i] < 1024).all()
    assert done.chunk_stop_reasons == ["end_token" if e else "max_new_tokens" for e in case["ended"]]
    assert done.frames == sum(int(generation[f"{name}/chunk{i}/kept"].shape[0]) for i in range(len(case["chunks"])))


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].get("logits")])
def test_decode_step_logits_equal_upstreams(outcomes, generation, name):
    recorder, _, _, _ = outcomes[name]
    frames = generation[f"{name}/chunk0/frames"].shape[0]
    for j, step in enumerate([1, 2, frames - 1]):
        difference = (recorder.logits[0][step] - generation[f"{name}/chunk0/step_logits"][j]).abs().max().item()
        assert difference < TOLERANCE, (step, difference)


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].get("waveform")])
def test_audio_equals_upstreams_waveform(outcomes, generation, name):
    """One chunk: the streamed audio is upstream's waveform. Several: upstream decodes all
    chunks' codes in one go, this runtime chunk by chunk with 5 ms fades at the seams, so the
    codes decoded in one go are compared."""
    recorder, done, audio, runtime = outcomes[name]
    expected = generation[f"{name}/waveform"].numpy()
    if len(CASES[name]["chunks"]) == 1:
        assert audio.shape == expected.shape
        assert np.abs(audio - expected).max() < TOLERANCE
    else:
        decoded = runtime.codec.decode(torch.cat(done.chunk_codes))
        assert decoded.shape == expected.shape
        assert np.abs(decoded - expected).max() < TOLERANCE


def test_the_prefix_cache_served_some_of_the_cases(runtimes, outcomes):
    stats = [runtime.decoder.executor.prefix_cache.stats for runtime, _ in runtimes.values()]
    assert sum(s.hits for s in stats) >= 3 and sum(s.misses for s in stats) >= 3


def test_the_fixture_cases_reach_what_they_are_for(outcomes):
    """Guards the fixture itself: end-of-stream reached with codebook 0 first and with a later
    codebook first; the long case switches buckets more than once."""
    for name, first_codebook in (("eos_first", 0), ("eos_later", 3)):
        frames = outcomes[name][0].frames[0]
        first = int((frames == 1025).any(dim=1).nonzero()[0])
        assert int((frames[first] == 1025).sum()) - 1 == first_codebook
        assert frames.shape[0] == first + 8 - first_codebook
    assert outcomes["long"][0].stats[0].bucket_switches >= 2


# -- layouts ---------------------------------------------------------------------------------------


def test_both_original_components_are_detected_and_reported(runtimes):
    runtime, paths = runtimes["base"]
    assert detect_layout(paths.generation) == "original"
    assert detect_layout(paths.tokenizer) == "original"
    info = runtime.bundle.info
    assert info["layout"] == "original" and info["tokenizer_layout"] == "original"


def test_a_bf16_load_keeps_the_rope_frequencies_exact(runtimes):
    """`model.to(bf16)` would round the Llama-3-scaled inverse frequencies; they stay float32 and
    equal the float32 load's."""
    from boson_multimodal.loader import load_bundle

    runtime, paths = runtimes["base"]
    bf16 = load_bundle(paths, device="cpu", dtype=torch.bfloat16).model.model.rotary_emb
    fp32 = runtime.bundle.model.model.rotary_emb
    assert bf16.inv_freq.dtype == bf16.original_inv_freq.dtype == torch.float32
    assert torch.equal(bf16.inv_freq, fp32.inv_freq) and torch.equal(bf16.original_inv_freq, fp32.inv_freq)


def test_convert_once_writes_a_native_volume_with_the_same_output(runtimes, generation, tmp_path):
    _, volume = runtimes["base"]
    converted = ModelPaths.under(tmp_path / "native")
    done = convert_bundle(volume, converted)
    assert done["generation"] == done["tokenizer"] == "converted" and sorted(done["voices"]) == ["alpha", "beta"]
    assert detect_layout(converted.generation) == detect_layout(converted.tokenizer) == "transformers"
    native = HiggsAudio.load(converted, device="cpu", max_cache_len=2048)
    assert native.bundle.info["layout"] == "transformers"
    name = "v1-scene-plain"
    events = list(native.speak(synthesis(CASES[name], converted)))
    assert torch.equal(events[-1].chunk_codes[0], generation[f"{name}/chunk0/kept"])
    with pytest.raises(FileExistsError):
        convert_bundle(volume, converted)


def test_unsupported_original_variants_are_refused_with_reasons():
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
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert "model of type" not in err  # transformers' warning about the original config's model type
    assert summary["generation"] == "converted" and sorted(summary["voices"]) == ["alpha", "beta"]
    assert main(["convert", str(src), str(tmp_path / "dst")]) == 1  # never over a volume
    assert "not empty" in capsys.readouterr().err
