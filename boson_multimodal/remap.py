"""The original bosonai checkpoints' configs and weight names -> transformers' native ones.

Pure functions over config dicts and state dicts (`convert.py` reads and writes the files). Only
the published variants have a native equivalent: any other is refused with the reasons, and a
weight name that is not known is an error, never silently lost."""

from __future__ import annotations

import math
import re
from typing import Any

import torch

DELAY_TOKEN = "<|reserved_special_token_6|>"


class ConversionError(ValueError):
    """The checkpoint is in the original layout but cannot be mapped (an unsupported variant,
    or weights that do not match its config)."""


# -- generation model ----------------------------------------------------------------------


def _require(condition: bool, problem: str, problems: list[str]) -> None:
    if not condition:
        problems.append(problem)


def _generation_problems(raw: dict[str, Any], text: dict[str, Any], tokenizer) -> list[str]:
    layers = int(text.get("num_hidden_layers", 0))
    problems: list[str] = []
    _require(raw.get("audio_adapter_type") in ("dual_ffn", "dual_ffn_fast_forward"),
             f"audio_adapter_type={raw.get('audio_adapter_type')!r} (needs dual_ffn)", problems)
    _require(sorted(raw.get("audio_dual_ffn_layers") or []) == list(range(layers)),
             "audio_dual_ffn_layers must list every layer", problems)
    _require(bool(raw.get("use_delay_pattern")), "use_delay_pattern is off", problems)
    for flag in ("use_audio_out_self_attention", "use_audio_out_embed_projector", "use_rq_transformer"):
        _require(not raw.get(flag), f"{flag} is on", problems)
    _require(not raw.get("audio_decoder_proj_num_layers"), "audio_decoder_proj_num_layers > 0", problems)
    _require(text.get("model_type", "llama") == "llama", f"text model {text.get('model_type')!r}", problems)
    _require(not raw.get("audio_embed_avg"), "audio_embed_avg is on (the native model sums codebook embeddings)",
             problems)
    for field, native in (("hidden_size", "hidden_size"), ("audio_ffn_hidden_size", "hidden_size"),
                          ("audio_ffn_intermediate_size", "intermediate_size")):
        if raw.get(field) is not None:  # the native audio FFN has the text FFN's sizes
            _require(raw[field] == text.get(native), f"{field}={raw[field]} differs from the text "
                     f"model's {native}={text.get(native)}", problems)
    if tokenizer is not None:
        _token_problems(raw, tokenizer, problems)
    return problems


def generation_config(raw: dict[str, Any], tokenizer=None):
    """The native config for an original `higgs_audio` config.json. Only the variant that was
    published (a Llama backbone with a dual-FFN audio path on every layer, the delay pattern,
    no audio tower in use, one linear audio head) has a native equivalent; others are refused
    with the reasons."""
    from transformers import HiggsAudioV2Config

    text = dict(raw.get("text_config") or {})
    layers = int(text.get("num_hidden_layers", 0))
    problems = _generation_problems(raw, text, tokenizer)
    if problems:
        raise ConversionError("this original checkpoint has no native equivalent: " + "; ".join(problems))

    hidden, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
    scaling = dict(text.get("rope_scaling") or {})
    rope = {k: v for k, v in scaling.items() if k != "type"}
    rope["rope_type"] = scaling.get("rope_type") or scaling.get("type") or "default"
    rope["rope_theta"] = float(text.get("rope_theta", 10000.0))
    delay = 128014
    if tokenizer is not None:
        found = tokenizer.convert_tokens_to_ids(DELAY_TOKEN)
        if isinstance(found, int) and found != tokenizer.unk_token_id:
            delay = found
    try:
        return HiggsAudioV2Config(
            vocab_size=int(text["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(text["intermediate_size"]),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=int(text.get("head_dim") or hidden // heads),
            hidden_act=text.get("hidden_act", "silu"),
            max_position_embeddings=int(text.get("max_position_embeddings", 2048)),
            rms_norm_eps=float(text.get("rms_norm_eps", 1e-5)),
            rope_parameters=rope,
            attention_bias=bool(text.get("attention_bias", False)),
            mlp_bias=bool(text.get("mlp_bias", False)),
            tie_word_embeddings=False,
            pad_token_id=raw.get("pad_token_id", text.get("pad_token_id")),
            bos_token_id=text.get("bos_token_id"),
            eos_token_id=text.get("eos_token_id"),
            num_codebooks=int(raw.get("audio_num_codebooks", 8)),
            codebook_size=int(raw.get("audio_codebook_size", 1024)) + 2,  # + stream BOS and EOS
            audio_stream_bos_id=int(raw.get("audio_stream_bos_id", 1024)),
            audio_stream_eos_id=int(raw.get("audio_stream_eos_id", 1025)),
            audio_token_id=int(raw.get("audio_out_token_idx", 128016)),
            audio_bos_token_id=int(raw.get("audio_out_bos_token_id", 128013)),
            audio_delay_token_id=delay,
        )
    except Exception as exc:  # transformers' own validation of the sizes (its own error types)
        raise ConversionError(f"the original config does not describe a valid model: {exc}") from exc


# Token fields of the original config: the id the model was trained with must be the id the
# text tokenizer gives the token (prompts are built from the tokenizer's tokens).
_TOKEN_FIELDS = (("audio_out_token", "audio_out_token_idx"), ("audio_out_bos_token", "audio_out_bos_token_id"),
                 ("audio_eos_token", "audio_eos_token_id"), ("audio_in_token", "audio_in_token_idx"))


def _token_problems(raw: dict[str, Any], tokenizer, problems: list[str]) -> None:
    for token_field, id_field in _TOKEN_FIELDS:
        token, expected = raw.get(token_field), raw.get(id_field)
        if token is None or expected is None:
            continue
        found = tokenizer.convert_tokens_to_ids(token)
        _require(found == expected, f"{id_field}={expected} but the text tokenizer gives {token} the id {found}",
                 problems)


_PARTIAL = re.compile(r"^(.*)\.(embedding|linear)_(frozen|trainable)\.weight$")
_DROPPED = ("audio_tower.", "audio_encoder_proj.", "audio_decoder_proj.text_lm_head.")


def _merge_partially_frozen(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Training split some embeddings/heads into frozen and trainable rows: join them again."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = _PARTIAL.match(key)
        if match:
            parts.setdefault(match.group(1), {})[match.group(3)] = tensor
        else:
            out[key] = tensor
    for stem, pair in parts.items():
        if set(pair) != {"frozen", "trainable"}:
            raise ConversionError(f"{stem}: a partially frozen weight lacks its other half")
        out[f"{stem}.weight"] = torch.cat([pair["frozen"], pair["trainable"]], dim=0)
    return out


def generation_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Upstream weight names -> native ones. Unknown names are an error, never silently lost."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in _merge_partially_frozen(state).items():
        if key.startswith(_DROPPED) or key == "audio_codebook_weights" or "rotary_emb" in key:
            continue
        if key == "audio_decoder_proj.audio_lm_head.weight":
            out["audio_lm_head.weight"] = tensor
        elif key == "audio_codebook_embeddings.weight":
            out["model.embed_audio_tokens.embed_audio_tokens.weight"] = tensor
        elif key.startswith(("embed_tokens.", "layers.", "norm.")):
            out[f"model.{key}"] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"unexpected weights in the original checkpoint: {sorted(unknown)[:8]}")
    return out


# -- audio tokenizer -----------------------------------------------------------------------

_RES_UNIT = ("snake1", "conv1", "snake2", "conv2")  # a residual unit's four layers, in order
# DAC's nn.Sequential -> named layers. Both stacks are: conv, blocks, snake, conv. An encoder
# block is 3 residual units, a snake, a strided conv; a decoder block is a snake, a transposed
# conv, 3 residual units. (upstream sequential, native prefix, residual units' positions in a
# block, the block's other layers by position)
_DAC = (
    ("encoder.block", "acoustic_encoder", (0, 1, 2), {3: "snake1", 4: "conv1"}),
    ("decoder_2.model", "acoustic_decoder", (2, 3, 4), {0: "snake1", 1: "conv_t1"}),
)


def _acoustic_name(key: str, blocks: int) -> str | None:
    for sequential, prefix, units, layers in _DAC:
        m = re.match(rf"^{re.escape(sequential)}\.(\d+)\.(.*)$", key)
        if not m:
            continue
        i, rest = int(m.group(1)), m.group(2)
        ends = {0: "conv1", blocks + 1: "snake1", blocks + 2: "conv2"}
        if i in ends:
            return f"{prefix}.{ends[i]}.{rest}"
        r = re.match(r"^block\.(\d+)\.(.*)$", rest)
        if not r:
            return None
        j, tail = int(r.group(1)), r.group(2)
        block = f"{prefix}.block.{i - 1}"
        if j in units:
            u = re.match(r"^block\.(\d+)\.(.*)$", tail)
            return f"{block}.res_unit{units.index(j) + 1}.{_RES_UNIT[int(u.group(1))]}.{u.group(2)}" if u else None
        return f"{block}.{layers[j]}.{tail}" if j in layers else None
    return None


def _fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weight_g`, `weight_v` -> `weight` (= g * v / ||v||, norm over all but dim 0), with the
    same kernel weight norm uses, so the weights are bit-identical to what upstream runs."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            stem = key[: -len(".weight_v")]
            g = state.get(f"{stem}.weight_g")
            if g is None:
                raise ConversionError(f"{stem}: weight_v without weight_g")
            out[f"{stem}.weight"] = torch._weight_norm(tensor, g, 0)
        else:
            out[key] = tensor
    return out


def tokenizer_state(state: dict[str, torch.Tensor], ratios: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    renames = {"fc_prior.": "fc.", "fc_post1.": "fc1.", "fc_post2.": "fc2."}
    for key, tensor in _fold_weight_norm(state).items():
        if key in TOKENIZER_WEIGHTS_DROPPED:
            continue
        name: str | None = None
        if key.startswith(("encoder.", "decoder_2.")):
            name = _acoustic_name(key, ratios)
        elif key.startswith("semantic_model."):
            name = key
        elif key.startswith(("encoder_semantic.", "decoder_semantic.")):
            name = re.sub(r"\.(conv\d?)\.conv\.(weight|bias)$", r".\1.\2", key)
        elif key.startswith("quantizer.vq.layers."):
            name = re.sub(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.quantizers.\1.codebook.", key)
            name = re.sub(r"^quantizer\.vq\.layers\.(\d+)\.", r"quantizer.quantizers.\1.", name)
        else:
            for old, new in renames.items():
                if key.startswith(old):
                    name = new + key[len(old):]
        if name is None:
            unknown.append(key)
        else:
            out[name] = tensor
    if unknown:
        raise ConversionError(f"unexpected weights in the original audio tokenizer: {sorted(unknown)[:8]}")
    return out


def _semantic_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """HuBERT's shape, read from its weights. Upstream builds a HuBERT base from the hub; what
    the weights cannot say (strides, activation) keeps HuBERT base's values, and the head count
    follows HuBERT's 64-wide heads."""
    p = "semantic_model."
    hidden = state[f"{p}feature_projection.projection.weight"].shape[0]
    conv = sorted(int(m.group(1)) for k in state
                  if (m := re.match(rf"^{p}feature_extractor\.conv_layers\.(\d+)\.conv\.weight$", k)))
    layers = {int(m.group(1)) for k in state if (m := re.match(rf"^{p}encoder\.layers\.(\d+)\.", k))}
    pos = state.get(f"{p}encoder.pos_conv_embed.conv.parametrizations.weight.original1")
    if pos is None:
        pos = state[f"{p}encoder.pos_conv_embed.conv.weight_v"]
    normed = [i for i in conv if f"{p}feature_extractor.conv_layers.{i}.layer_norm.weight" in state]
    return {
        "hidden_size": hidden,
        "num_hidden_layers": len(layers),
        "num_attention_heads": max(1, hidden // 64),
        "intermediate_size": state[f"{p}encoder.layers.0.feed_forward.intermediate_dense.weight"].shape[0],
        "conv_dim": [state[f"{p}feature_extractor.conv_layers.{i}.conv.weight"].shape[0] for i in conv],
        "conv_kernel": [state[f"{p}feature_extractor.conv_layers.{i}.conv.weight"].shape[2] for i in conv],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2][: len(conv)],
        "conv_bias": f"{p}feature_extractor.conv_layers.0.conv.bias" in state,
        "feat_extract_norm": "layer" if len(normed) == len(conv) > 1 else "group",
        "num_conv_pos_embeddings": pos.shape[2],
        "num_conv_pos_embedding_groups": hidden // pos.shape[1],
        "do_stable_layer_norm": False,
        "mask_time_prob": 0.0,
    }


# Fields of the original tokenizer config.json that upstream's class accepts and never reads
# (or reads only for teachers and modes refused above), so ignoring them is safe. Any field
# not here and not read below is refused: upstream's constructor would reject it too.
TOKENIZER_FIELDS_IGNORED = {
    "n_filters": "upstream hard-codes the DAC encoder's width (64); it is read from the weights here",
    "normalize": "accepted by upstream's constructor and never read",
    "causal": "accepted by upstream's constructor and never read",
    "last_layer_semantic": "read only for whisper and MERT teachers; a HuBERT teacher is required",
    "merge_mode": "accepted by upstream's constructor and never read (streams are concatenated)",
    "semantic_mode": "accepted by upstream's constructor and never read",
    "device": "where upstream puts the model, not what it is",
    "target_bandwidths": "upstream encodes with all n_q quantizers whatever the bandwidths say; the native config's "
                         "one bandwidth is derived from n_q",
}
TOKENIZER_FIELDS_READ = ("n_q", "bins", "ratios", "sample_rate", "semantic_sample_rate", "D",
                         "codebook_dim", "semantic_techer", "downsample_mode", "vq_scale")
# Weights of the original tokenizer that the native model has no place for, and why that is safe.
TOKENIZER_WEIGHTS_DROPPED = {
    "semantic_model.masked_spec_embed": "HuBERT's SpecAugment mask vector, used only while training",
}


def held_quantizers(names) -> int:
    """How many RVQ layers a set of tensor names holds (original or native names). The layers
    must be numbered 0..n-1: a gap means a damaged file."""
    found = {int(m.group(1)) for name in names
             if (m := re.match(r"^quantizer\.(?:vq\.layers|quantizers)\.(\d+)\.", name))}
    if found != set(range(len(found))):
        raise ConversionError(f"the audio tokenizer's quantizer layers are not numbered 0..n-1: {sorted(found)}")
    return len(found)


def bandwidths_for(quantizers: int, frame_rate: int, codebook_size: int) -> list[float]:
    """The native config has no quantizer count: it derives one from its largest bandwidth
    (kbps x 1000 // (frames per second x bits per code)). Upstream builds `n_q` quantizers and
    encodes with all of them whatever its `target_bandwidths` say, so the one bandwidth given
    is `quantizers` x the bandwidth of one (raised by the least float step where the division
    would round below it)."""
    per_quantizer = frame_rate * math.ceil(math.log2(codebook_size))
    top = quantizers * per_quantizer / 1000
    while int(1000 * top // per_quantizer) < quantizers:
        top = math.nextafter(top, math.inf)
    return [top]


def _tokenizer_problems(raw: dict[str, Any], state: dict[str, torch.Tensor]) -> list[str]:
    problems: list[str] = []
    unknown = sorted(set(raw) - set(TOKENIZER_FIELDS_IGNORED) - set(TOKENIZER_FIELDS_READ))
    _require(not unknown, f"fields upstream's tokenizer does not take: {unknown}", problems)
    _require(isinstance(raw.get("bins", 1024), int), "bins must be an integer (an RVQ, not an FSQ)", problems)
    _require(raw.get("semantic_techer", "hubert_base_general") in ("hubert_base", "hubert_base_general"),
             f"semantic_techer={raw.get('semantic_techer')!r} (needs a HuBERT)", problems)
    _require(raw.get("downsample_mode", "step_down") == "step_down", "downsample_mode must be step_down", problems)
    _require(int(raw.get("vq_scale") or 1) == 1, "vq_scale must be 1", problems)
    project_in = state.get("quantizer.vq.layers.0.project_in.weight")
    _require(project_in is not None, "model.pth holds no quantizer (quantizer.vq.layers.0.*)", problems)
    if project_in is not None and raw.get("codebook_dim") is not None:
        _require(int(raw["codebook_dim"]) == project_in.shape[0],
                 f"codebook_dim={raw['codebook_dim']} but the weights' codebooks are {project_in.shape[0]} wide",
                 problems)
    decoder_in = state.get("decoder_2.model.0.weight_v")
    if decoder_in is not None and raw.get("D") is not None:
        _require(int(raw["D"]) == decoder_in.shape[1],
                 f"D={raw['D']} but the weights' acoustic features are {decoder_in.shape[1]} wide", problems)
    return problems


def tokenizer_config(raw: dict[str, Any], state: dict[str, torch.Tensor]):
    """The native config for an original (xcodec-style) tokenizer config.json. Upstream fixes
    some widths in code (DAC encoder 64, decoder 1024, HuBERT 768): they are read from the
    weights instead, so what loads is what was saved. The quantizer count is what the config
    declares (`n_q`, upstream's default 8) and must be what `model.pth` holds."""
    from transformers import HiggsAudioV2TokenizerConfig

    problems = _tokenizer_problems(raw, state)
    quantizers = int(raw.get("n_q", 8))
    held = held_quantizers(state)
    _require(quantizers == held, f"config.json declares n_q={quantizers} but model.pth holds {held} quantizers",
             problems)
    if problems:
        raise ConversionError("this original audio tokenizer has no native equivalent: " + "; ".join(problems))
    ratios = list(raw.get("ratios", [8, 5, 4, 2]))
    sample_rate, bins = int(raw.get("sample_rate", 24000)), int(raw.get("bins", 1024))
    frame_rate = math.ceil(sample_rate / math.prod(ratios))
    config = HiggsAudioV2TokenizerConfig(
        target_bandwidths=bandwidths_for(quantizers, frame_rate, bins),
        sample_rate=sample_rate,
        codebook_size=bins,
        codebook_dim=int(state["quantizer.vq.layers.0.project_in.weight"].shape[0]),
        semantic_sample_rate=int(raw.get("semantic_sample_rate") or 16000),
        acoustic_model_config=dict(
            encoder_hidden_size=int(state["encoder.block.0.weight_v"].shape[0]),
            downsampling_ratios=ratios,
            decoder_hidden_size=int(state["decoder_2.model.0.weight_v"].shape[0]),
            upsampling_ratios=ratios,
            hidden_size=int(state["decoder_2.model.0.weight_v"].shape[1]),
        ),
        semantic_model_config=_semantic_config(state),
    )
    if config.num_quantizers != quantizers:  # the derivation above is the native class's own rule
        raise ConversionError(f"the native config would build {config.num_quantizers} quantizers, not {quantizers}")
    return config
