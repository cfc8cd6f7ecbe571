"""The real Higgs Audio V2 checkpoint, checked without its weights: its published configs and
its tensor names and shapes (../shared/reference/higgs-v2-original, copied into
tests/fixtures/real_checkpoint) go through the loader's own path with meta tensors in place of
the weight files, for the original layout and for the native one `convert` writes. A clean
load, the real shapes, and 8 codebooks from the audio tokenizer to the generation model."""

import copy
import json
import re
from pathlib import Path

import pytest
import torch

from boson_multimodal import convert
from boson_multimodal.codec import AudioCodec
from boson_multimodal.layout import ModelPaths
from boson_multimodal.loader import ModelLoadError, open_components
from boson_multimodal.remap import (
    TOKENIZER_FIELDS_IGNORED,
    TOKENIZER_FIELDS_READ,
    ConversionError,
    bandwidths_for,
    generation_config,
    held_quantizers,
    tokenizer_config,
)
from boson_multimodal.resample import provide_torchaudio
from boson_multimodal.sampling import CodeIds

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real_checkpoint"
provide_torchaudio()
from transformers import (  # noqa: E402
    HiggsAudioV2Config,
    HiggsAudioV2ForConditionalGeneration,
    HiggsAudioV2TokenizerConfig,
    PreTrainedTokenizerFast,
)
from transformers.models.higgs_audio_v2_tokenizer.modeling_higgs_audio_v2_tokenizer import (  # noqa: E402
    HiggsAudioV2TokenizerModel,
)


def read(name: str):
    return json.loads((REAL / name).read_text())


def meta(shape, dtype=torch.bfloat16) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def generation_weights() -> dict[str, torch.Tensor]:
    """Every tensor of the three model-*.safetensors shards (bf16), by the index's names."""
    shapes = {p["name"]: p["shape"] for p in read("reports/model_weights_report.json")["enumeration"]["params"]}
    names = read("model/model.safetensors.index.json")["weight_map"]
    assert set(names) == set(shapes)
    return {name: meta(shapes[name]) for name in names}


def tokenizer_weights() -> dict[str, torch.Tensor]:
    """Every tensor of the audio tokenizer's model.pth (float32)."""
    tensors = read("reports/tokenizer_report.json")["state_dict"]["tensors"]
    return {t["name"]: meta(t["shape"], torch.float32) for t in tensors}


def text_tokenizer() -> PreTrainedTokenizerFast:
    """A stand-in for the text vocabulary (not in the snapshot): filler tokens below 128000,
    then the published special tokens at the ids tokenizer_config.json gives them."""
    from tokenizers import Tokenizer, models

    added = {int(i): t["content"] for i, t in read("tokenizer/tokenizer_config.json")["added_tokens_decoder"].items()}
    assert sorted(added) == list(range(128000, 128256))
    vocab = {f"t{i}": i for i in range(128000)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    core.add_special_tokens([added[i] for i in sorted(added)])
    return PreTrainedTokenizerFast(tokenizer_object=core)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A volume in the original layout: the real config files, weights read as meta tensors."""
    paths = ModelPaths.under(tmp_path_factory.mktemp("real"))
    paths.generation.mkdir(parents=True)
    paths.tokenizer.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "special_tokens_map.json"):
        (paths.generation / name).write_text((REAL / "model" / name).read_text())
    text_tokenizer().save_pretrained(paths.generation)
    (paths.generation / "tokenizer_config.json").write_text((REAL / "tokenizer/tokenizer_config.json").read_text())
    (paths.tokenizer / "config.json").write_text((REAL / "audio_tokenizer/config.json").read_text())
    (paths.tokenizer / "model.pth").write_bytes(b"")  # read as meta tensors below
    return paths


@pytest.fixture
def meta_reads(monkeypatch):
    """The loader reads weight files in two places (safetensors, model.pth) and tensor names in
    one (safetensors headers): those reads give the real checkpoint's tensors on the meta device."""
    native: dict[Path, list[str]] = {}
    monkeypatch.setattr(convert, "_safetensors", lambda directory: generation_weights())
    monkeypatch.setattr(convert, "read_tokenizer_weights", lambda path: tokenizer_weights())
    monkeypatch.setattr(convert, "tensor_names", lambda directory: native[Path(directory)])
    return native


def test_the_original_layout_loads_with_the_real_shapes_and_8_codebooks(original, meta_reads):
    generation, codec = open_components(original)
    assert generation.layout == codec.layout == "original"
    model = convert.build_model(HiggsAudioV2ForConditionalGeneration, generation.config, generation.state,
                                torch.bfloat16, generation.source)
    audio_tokenizer = convert.build_model(HiggsAudioV2TokenizerModel, codec.config, codec.state, torch.float32,
                                          codec.source)
    assert_real_generation_model(model)
    assert_real_audio_tokenizer(audio_tokenizer)


def test_the_native_layout_that_convert_writes_loads_the_same(original, meta_reads, tmp_path):
    """`convert` saves each converted model with save_pretrained: its config.json, and weights
    under the skeleton's names. The native path reads those back and checks them the same way."""
    generation, codec = open_components(original)
    native = ModelPaths.under(tmp_path / "native")
    skeletons = {}
    for component, cls, target in ((generation, HiggsAudioV2ForConditionalGeneration, native.generation),
                                   (codec, HiggsAudioV2TokenizerModel, native.tokenizer)):
        skeleton = convert.skeleton(cls, component.config, component.state, component.source)
        component.config.save_pretrained(target)
        meta_reads[target] = list(skeleton.state_dict())
        skeletons[cls] = skeleton
    generation2, codec2 = open_components(native)
    assert generation2.layout == codec2.layout == "transformers"
    assert codec2.config.num_quantizers == codec2.quantizers_held == generation2.config.num_codebooks == 8
    model = convert.skeleton(HiggsAudioV2ForConditionalGeneration, generation2.config,
                             skeletons[HiggsAudioV2ForConditionalGeneration].state_dict(), native.generation)
    audio_tokenizer = convert.skeleton(HiggsAudioV2TokenizerModel, codec2.config,
                                       skeletons[HiggsAudioV2TokenizerModel].state_dict(), native.tokenizer)
    assert_real_generation_model(model)
    assert_real_audio_tokenizer(audio_tokenizer)


def assert_real_generation_model(model) -> None:
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
            c.intermediate_size, c.vocab_size) == (3072, 28, 24, 8, 128, 8192, 128256)
    assert (c.num_codebooks, c.codebook_size, c.audio_stream_bos_id, c.audio_stream_eos_id) == (8, 1026, 1024, 1025)
    assert (c.audio_token_id, c.audio_bos_token_id, c.audio_delay_token_id) == (128016, 128013, 128014)
    rope = c.rope_parameters
    assert (rope["rope_type"], rope["factor"], rope["original_max_position_embeddings"], rope["rope_theta"]) == \
        ("llama3", 32.0, 8192, 500000.0)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(model.model.layers) == 28
    for i in range(28):
        assert shapes[f"model.layers.{i}.self_attn.q_proj.weight"] == (3072, 3072)
        assert shapes[f"model.layers.{i}.self_attn.k_proj.weight"] == (1024, 3072)
        assert shapes[f"model.layers.{i}.mlp.gate_proj.weight"] == (8192, 3072)
        assert shapes[f"model.layers.{i}.audio_mlp.down_proj.weight"] == (3072, 8192)
    assert shapes["model.embed_audio_tokens.embed_audio_tokens.weight"] == (8 * 1026, 3072)
    assert shapes["audio_lm_head.weight"] == (8 * 1026, 3072)
    assert shapes["model.embed_tokens.weight"] == (128256, 3072)
    dropped = 128256 * 3072  # the text head: the native model has none
    assert sum(p.numel() for p in model.parameters()) == 5771283456 - dropped
    assert all(p.is_meta and p.dtype == torch.bfloat16 for p in model.parameters())
    assert CodeIds(c).num_codebooks == 8


def assert_real_audio_tokenizer(model) -> None:
    codec = AudioCodec(model, "meta")
    assert (codec.num_codebooks, codec.codebook_size, codec.hop, codec.sample_rate) == (8, 1024, 960, 24000)
    assert len(model.quantizer.quantizers) == 8 and model.config.num_quantizers == 8
    semantic = model.config.semantic_model_config
    assert (semantic.hidden_size, semantic.num_hidden_layers, semantic.intermediate_size) == (768, 12, 3072)
    assert model.config.acoustic_model_config.hidden_size == 256 and model.config.codebook_dim == 64
    held = read("reports/tokenizer_report.json")["state_dict"]["tensors"]
    dropped = 768  # HuBERT's masked_spec_embed, a training-only vector
    folded = sum(t["numel"] for t in held if t["name"].endswith(".weight_g"))  # weight norm: g into the weight
    assert sum(t.numel() for t in model.state_dict().values()) == sum(t["numel"] for t in held) - dropped - folded


# -- the quantizer count: what the config says, what the weights hold, what the model reads ----


def native_tokenizer_config(bandwidths: list[float]) -> HiggsAudioV2TokenizerConfig:
    """The published tokenizer's shape (hop 960 at 24 kHz: 25 frames a second, 0.25 kbps a quantizer)."""
    ratios = [8, 5, 4, 2, 3]
    return HiggsAudioV2TokenizerConfig(target_bandwidths=bandwidths, acoustic_model_config=dict(
        downsampling_ratios=ratios, upsampling_ratios=ratios))


@pytest.mark.parametrize("bandwidths,held,codebooks", [
    ([0.5, 1, 1.5, 2, 4], 8, 8),  # transformers' defaults: 16 quantizers; the file and the model have 8
    ([0.5, 1, 1.5, 2, 4], 16, 8),  # a 16-quantizer tokenizer for an 8-codebook model
    ([0.5, 1, 1.5, 2], 8, 16),  # an 8-quantizer tokenizer for a 16-codebook model
    ([0.5, 1, 1.5, 2], 4, 8),  # a damaged file: half the quantizers
    ([1.5], 8, 8),  # 6 quantizers
])
def test_a_native_tokenizer_that_disagrees_is_refused_naming_each_count(
        original, meta_reads, tmp_path, bandwidths, held, codebooks):
    native = ModelPaths.under(tmp_path / "vol")
    HiggsAudioV2Config(num_codebooks=codebooks).save_pretrained(native.generation)
    native_tokenizer_config(bandwidths).save_pretrained(native.tokenizer)
    meta_reads[native.tokenizer] = [f"quantizer.quantizers.{i}.codebook.embed" for i in range(held)]
    implied = native_tokenizer_config(bandwidths).num_quantizers
    with pytest.raises(ModelLoadError) as caught:
        open_components(native)
    message = str(caught.value)
    assert f"implies {implied} quantizers" in message and f"its weights hold {held}" in message
    assert f"has {codebooks} codebooks" in message and f"must end at {held * 0.25:g}" in message


def test_a_native_volume_that_agrees_opens(meta_reads, tmp_path):
    native = ModelPaths.under(tmp_path / "vol")
    HiggsAudioV2Config(num_codebooks=8).save_pretrained(native.generation)
    native_tokenizer_config([0.5, 1, 1.5, 2]).save_pretrained(native.tokenizer)
    meta_reads[native.tokenizer] = [f"quantizer.quantizers.{i}.codebook.embed" for i in range(8)]
    generation, codec = open_components(native)
    assert codec.quantizers_held == codec.config.num_quantizers == generation.config.num_codebooks == 8


@pytest.mark.parametrize("n_q", [1, 2, 4, 7, 8, 9, 12, 16, 32])
def test_the_original_tokenizer_builds_exactly_the_quantizers_it_declares_and_holds(n_q):
    raw = read("audio_tokenizer/config.json") | {"n_q": n_q}
    state = {k: v for k, v in tokenizer_weights().items() if not k.startswith("quantizer.")}
    for i in range(n_q):
        for name, shape in (("project_in.weight", (64, 1024)), ("_codebook.embed", (1024, 64))):
            state[f"quantizer.vq.layers.{i}.{name}"] = meta(shape, torch.float32)
    assert tokenizer_config(raw, state).num_quantizers == n_q
    for declared in {n_q - 1, n_q + 1, 8} - {n_q, 0}:
        with pytest.raises(ConversionError, match=f"declares n_q={declared} but model.pth holds {n_q}"):
            tokenizer_config(raw | {"n_q": declared}, state)


def test_the_derived_bandwidth_gives_the_quantizer_count_for_every_rate():
    """The native class divides the largest bandwidth back into a count, in floating point:
    every count, frame rate and codebook width comes back exactly."""
    for quantizers in range(1, 65):
        for frame_rate in range(1, 151):
            for bits in range(1, 17):
                config_top = bandwidths_for(quantizers, frame_rate, 2 ** bits)[-1]
                assert int(1000 * config_top // (frame_rate * bits)) == quantizers


def test_quantizer_layers_must_be_numbered_without_gaps():
    assert held_quantizers(["quantizer.quantizers.0.codebook.embed", "quantizer.quantizers.1.codebook.embed"]) == 2
    assert held_quantizers(["quantizer.vq.layers.0._codebook.embed", "encoder.x"]) == 1
    assert held_quantizers(["encoder.block.0.bias"]) == 0
    with pytest.raises(ConversionError, match="not numbered"):
        held_quantizers(["quantizer.quantizers.0.codebook.embed", "quantizer.quantizers.2.codebook.embed"])


# -- every field of the real configs: read, or ignored for a stated reason ---------------------

# Fields of the original generation config.json the converter does not read, and why that is
# safe. Each is mutated below: the native config must come out identical.
GENERATION_IGNORED = {
    "_name_or_path": "where the config was made",
    "architectures": "the class name; the native class is chosen by the layout",
    "transformers_version": "the version that wrote the file",
    "torch_dtype": "the dtype the weights were saved in; the loader chooses the compute dtype",
    "model_type": "checked by detect_layout (higgs_audio means this layout)",
    "audio_encoder_config": "the Whisper audio tower, which encodes audio-in (<|AUDIO|>) tokens; no prompt "
                            "here contains one, and its weights are dropped",
    "skip_audio_tower": "true in the published model; the tower only reads audio-in tokens (see above)",
    "encode_whisper_embed": "audio-in tokens only (see audio_encoder_config)",
    "encode_audio_in_tokens": "audio-in tokens only (see audio_encoder_config)",
    "audio_tokenizer_config": "null; the audio tokenizer has its own config.json",
    "audio_bos_token": "a token string with no id field; prompts take its id from the text tokenizer",
    "rq_transformer_hidden_size": "only with use_rq_transformer, which is refused",
    "rq_transformer_intermediate_size": "only with use_rq_transformer, which is refused",
    "rq_transformer_num_attention_heads": "only with use_rq_transformer, which is refused",
    "rq_transformer_num_hidden_layers": "only with use_rq_transformer, which is refused",
    "rq_transformer_num_key_value_heads": "only with use_rq_transformer, which is refused",
}
# text_config fields that describe how transformers 4.x ran a model, not the model: generation
# defaults, label maps, output switches, training-only settings.
TEXT_IGNORED = {
    "_attn_implementation_autoset", "_name_or_path", "add_cross_attention", "architectures", "bad_words_ids",
    "begin_suppress_tokens", "chunk_size_feed_forward", "cross_attention_hidden_size", "decoder_start_token_id",
    "diversity_penalty", "do_sample", "early_stopping", "encoder_no_repeat_ngram_size",
    "exponential_decay_length_penalty", "finetuning_task", "forced_bos_token_id", "forced_eos_token_id",
    "id2label", "is_decoder", "is_encoder_decoder", "label2id", "length_penalty", "max_length", "min_length",
    "no_repeat_ngram_size", "num_beam_groups", "num_beams", "num_return_sequences", "output_attentions",
    "output_hidden_states", "output_scores", "pad_token_id", "prefix", "problem_type", "pruned_heads",
    "remove_invalid_values", "repetition_penalty", "return_dict", "return_dict_in_generate", "sep_token_id",
    "suppress_tokens", "task_specific_params", "temperature", "tf_legacy_loss", "tie_encoder_decoder",
    "tokenizer_class", "top_k", "top_p", "torch_dtype", "torchscript", "typical_p", "use_bfloat16", "use_cache",
    "initializer_range",  # initialisation only
    "attention_dropout",  # training only
    "pretraining_tp",  # splits the matmuls into slices: the same function
    "tie_word_embeddings",  # ties the text head, which the native model does not have (dropped)
}


def mutated(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value[:-1] if value else [1]
    if isinstance(value, dict):
        return {}
    return 1


def outcome(convert_fn, raw) -> object:
    try:
        return convert_fn(raw).to_dict()
    except (ConversionError, ValueError, TypeError) as exc:  # refused, or not a valid model
        return type(exc)


def field_cases(raw: dict):
    for key in raw:
        if key == "text_config":
            for inner in raw[key]:
                yield f"text_config.{inner}", inner in TEXT_IGNORED, lambda r, k=inner: r["text_config"]
        else:
            yield key, key in GENERATION_IGNORED, lambda r: r


def test_every_generation_config_field_is_read_or_ignored_for_a_stated_reason(original):
    """Mutating an ignored field leaves the native config as it was; mutating any other field
    changes it or is refused. A field in neither list fails here."""
    tokenizer = text_tokenizer()
    raw = read("model/config.json")
    base = generation_config(raw, tokenizer).to_dict()
    for name, ignored, parent in field_cases(raw):
        key = name.rsplit(".", 1)[-1]
        changed = copy.deepcopy(raw)
        parent(changed)[key] = mutated(parent(raw)[key])
        result = outcome(lambda r: generation_config(r, tokenizer), changed)
        if ignored:
            assert result == base, f"{name} is listed as ignored but changes the model"
        else:
            assert result != base, f"{name} is read by neither the converter nor a check: list it with a reason"
    assert set(GENERATION_IGNORED) <= set(raw) and TEXT_IGNORED <= set(raw["text_config"])


def test_every_tokenizer_config_field_is_read_or_ignored_for_a_stated_reason():
    raw = read("audio_tokenizer/config.json")
    state = tokenizer_weights()
    base = tokenizer_config(raw, state).to_dict()
    assert set(raw) <= set(TOKENIZER_FIELDS_READ) | set(TOKENIZER_FIELDS_IGNORED)
    for key in list(TOKENIZER_FIELDS_READ) + list(TOKENIZER_FIELDS_IGNORED):
        value = raw.get(key, {"n_q": 8, "bins": 1024, "vq_scale": 1, "semantic_sample_rate": 16000,
                              "downsample_mode": "step_down", "D": 256, "codebook_dim": 64}.get(key, True))
        result = outcome(lambda r: tokenizer_config(r, state), raw | {key: mutated(value)})
        if key in TOKENIZER_FIELDS_IGNORED:
            assert result == base, f"{key} is listed as ignored but changes the model"
        else:
            assert result != base, f"{key} is read by neither the converter nor a check"
    with pytest.raises(ConversionError, match="does not take"):
        tokenizer_config(raw | {"quantizer_dropout": 0.1}, state)


def test_a_token_id_that_the_text_tokenizer_disagrees_with_is_refused():
    raw = read("model/config.json")
    tokenizer = text_tokenizer()
    assert generation_config(raw, tokenizer).audio_token_id == tokenizer.convert_tokens_to_ids("<|AUDIO_OUT|>")
    for field in ("audio_out_token_idx", "audio_out_bos_token_id", "audio_eos_token_id", "audio_in_token_idx"):
        with pytest.raises(ConversionError, match=re.escape(field)):
            generation_config(raw | {field: raw[field] + 1}, tokenizer)
