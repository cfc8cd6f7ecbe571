"""Parity fixtures made with upstream's own code (boson-multimodal 0.1.1).

Runs ONLY in its own virtualenv (upstream pins transformers<4.47; see README.md here):

    python tools/upstream_parity/make_fixtures.py tests/fixtures/upstream

It builds tiny random-weight models with upstream's classes, saves them in the ORIGINAL bosonai
layout (generation: `model_type: higgs_audio` + safetensors with upstream names; audio
tokenizer: xcodec-style config.json + model.pth), and records what upstream computes:

- generation.safetensors: upstream's prompt token ids and audio frames for a voice-cloned,
  scene-prompted prompt, its greedy audio frames (delay pattern, BOS first) and the audio
  logits of its first decode steps;
- tokenizer.safetensors: a clip, upstream's semantic features and codes for it (its
  resampling is real torchaudio), and upstream's waveform for those codes.

Where upstream hard-codes full-size widths (DAC encoder 64, decoder 1024, a 768-wide HuBERT
from the hub) the script builds upstream's own classes smaller; the converter infers every width
from the weights, so the same code path serves the real checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

SPECIAL_TOKENS = [
    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|audio_out_bos|>", "<|reserved_special_token_6|>", "<|AUDIO|>", "<|AUDIO_OUT|>",
    "<|scene_desc_start|>", "<|scene_desc_end|>",
]
SCENE = "Audio is recorded from a quiet room."
REF_TRANSCRIPT = "The sun rises in the east and sets in the west."
TEXT = "Hello there, this is a parity test of the original layout."
NUM_CODEBOOKS = 8
REF_FRAMES = 30
NEW_FRAMES = 48


def text_tokenizer():
    """Byte-level BPE without merges plus the Llama-3 style specials (as the demo bundle's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    core = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(sorted(alphabet))}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|begin_of_text|>",
                                  eos_token="<|eot_id|>", pad_token="<|end_of_text|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    return tok


def reinit(module: torch.nn.Module, std: float, seed: int) -> None:
    """Weights larger than the default init, so greedy choices are far from ties."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif "norm" in name or "alpha" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))


# -- generation model ------------------------------------------------------------------------


def make_generation(out: Path) -> None:
    from safetensors.torch import save_file

    from boson_multimodal.data_collator.higgs_audio_collator import HiggsAudioSampleCollator
    from boson_multimodal.data_types import AudioContent, ChatMLSample, Message
    from boson_multimodal.dataset.chatml_dataset import ChatMLDatasetSample, prepare_chatml_sample
    from boson_multimodal.model.higgs_audio import HiggsAudioConfig, HiggsAudioModel

    tok = text_tokenizer()
    ids = tok.convert_tokens_to_ids
    text_config = dict(
        model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 512},
        bos_token_id=ids("<|begin_of_text|>"), eos_token_id=ids("<|eot_id|>"),
        pad_token_id=ids("<|end_of_text|>"),
    )
    config = HiggsAudioConfig(
        text_config=text_config, audio_adapter_type="dual_ffn_fast_forward",
        audio_dual_ffn_layers=[0, 1], audio_ffn_hidden_size=32, audio_ffn_intermediate_size=64,
        use_delay_pattern=True, skip_audio_tower=True, encode_whisper_embed=False,
        audio_num_codebooks=NUM_CODEBOOKS, audio_codebook_size=1024,
        audio_in_token_idx=ids("<|AUDIO|>"), audio_out_token_idx=ids("<|AUDIO_OUT|>"),
        pad_token_id=ids("<|end_of_text|>"), audio_out_bos_token_id=ids("<|audio_out_bos|>"),
        audio_eos_token_id=ids("<|audio_eos|>"),
    )
    torch.manual_seed(0)
    model = HiggsAudioModel(config).eval()
    reinit(model, std=0.3, seed=1)
    with torch.no_grad():  # never end early: upstream ends a stream differently by design
        head = model.audio_decoder_proj.audio_lm_head.weight.view(NUM_CODEBOOKS, 1026, -1)
        head[:, 1025] = 0
    target = out / "generation"
    model.save_pretrained(target, safe_serialization=True)
    tok.save_pretrained(target)

    g = torch.Generator().manual_seed(2)
    ref_codes = torch.randint(0, 1024, (NUM_CODEBOOKS, REF_FRAMES), generator=g)
    system = f"Generate audio following instruction.\n\n<|scene_desc_start|>\n{SCENE}\n<|scene_desc_end|>"
    sample = ChatMLSample(messages=[
        Message(role="system", content=system),
        Message(role="user", content=REF_TRANSCRIPT),
        Message(role="assistant", content=AudioContent(audio_url="placeholder")),
        Message(role="user", content=TEXT),
    ])
    tokens, _, _, _ = prepare_chatml_sample(sample, tok)
    tokens = list(tokens) + tok.encode(
        "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>", add_special_tokens=False)
    collator = HiggsAudioSampleCollator(
        whisper_processor=None, encode_whisper_embed=False,
        audio_in_token_id=config.audio_in_token_idx, audio_out_token_id=config.audio_out_token_idx,
        audio_stream_bos_id=1024, audio_stream_eos_id=1025, pad_token_id=config.pad_token_id,
        return_audio_in_tokens=False, use_delay_pattern=True, audio_num_codebooks=NUM_CODEBOOKS,
        round_to=1,
    )
    batch = asdict(collator([ChatMLDatasetSample(
        input_ids=torch.LongTensor(tokens), label_ids=None, audio_ids_concat=ref_codes,
        audio_ids_start=torch.tensor([0]), audio_waveforms_concat=None, audio_waveforms_start=None,
        audio_sample_rate=None, audio_speaker_indices=None,
    )]))
    captured: list[torch.Tensor] = []
    hook = model.audio_decoder_proj.audio_lm_head.register_forward_hook(
        lambda module, args, output: captured.append(output.detach().reshape(-1, output.shape[-1]).clone()))
    with torch.no_grad():
        outputs = model.generate(**batch, max_new_tokens=NEW_FRAMES, use_cache=True, do_sample=False,
                                 tokenizer=tok, ras_win_len=None)
    hook.remove()
    frames = outputs[1][0]  # [K, n]: delayed, BOS first
    # call 0 is the prefill: it scores the prompt's own audio frames, and the first generated
    # frame (all BOS) is forced without logits; each later call scores one new frame
    steps = torch.stack([c[-1].view(NUM_CODEBOOKS, 1026) for c in captured[1:5]]).float()
    save_file({
        "prompt_ids": batch["input_ids"][0].contiguous(),
        "prompt_audio": batch["audio_out_ids"].contiguous(),  # [K, frames] delayed, with BOS/EOS
        "ref_codes": ref_codes.contiguous(),
        "frames": frames.T.contiguous(),  # [n, K]
        "step_logits": steps.contiguous(),  # [4, K, 1026]: logits for frames 1..4
    }, str(out / "generation.safetensors"))
    (out / "generation.json").write_text(json.dumps(
        {"scene": SCENE, "ref_transcript": REF_TRANSCRIPT, "text": TEXT,
         "frames": int(frames.shape[1]), "prompt_tokens": len(tokens)}, indent=2) + "\n")
    print(f"generation: {frames.shape[1]} frames, prompt {len(tokens)} tokens")


# -- audio tokenizer -----------------------------------------------------------------------


def stub_audiotools() -> None:
    """upstream's vendored DAC imports audiotools only for types it does not use here."""
    audiotools = types.ModuleType("audiotools")
    audiotools.AudioSignal = object
    ml = types.ModuleType("audiotools.ml")
    ml.BaseModel = torch.nn.Module
    audiotools.ml = ml
    sys.modules.setdefault("audiotools", audiotools)
    sys.modules.setdefault("audiotools.ml", ml)
    import boson_multimodal.audio_processing as ap

    # the vendored package imports itself as the top-level `dac`
    sys.path.insert(0, str(Path(list(ap.__path__)[0]) / "descriptaudiocodec"))


def make_tokenizer(out: Path) -> None:
    from safetensors.torch import save_file
    from transformers import HubertConfig, HubertModel

    stub_audiotools()
    import boson_multimodal.audio_processing.higgs_audio_tokenizer as hat
    from boson_multimodal.audio_processing.quantization.vq import ResidualVectorQuantizer
    from boson_multimodal.audio_processing.semantic_module import Decoder, Encoder

    semantic = 16
    hubert = HubertConfig(
        hidden_size=semantic, num_hidden_layers=1, num_attention_heads=1, intermediate_size=32,
        conv_dim=[8] * 7, conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_kernel=[10, 3, 3, 3, 3, 2, 2],
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, mask_time_prob=0.0,
    )

    class TinyHub:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            return HubertModel(hubert)

    # upstream hard-codes full widths: build its own classes smaller
    full_encoder, full_decoder = hat.dac2.Encoder, hat.dac2.Decoder
    hat.AutoModel = TinyHub
    hat.dac2.Encoder = lambda d_model, ratios, d_latent: full_encoder(4, ratios, d_latent)
    hat.dac2.Decoder = lambda d_latent, channels, ratios: full_decoder(d_latent, 64, ratios)
    config = dict(n_filters=32, D=16, target_bandwidths=[0.5, 1, 1.5, 2], ratios=[8, 5, 4, 2, 3],
                  sample_rate=24000, bins=1024, n_q=8, codebook_dim=8,
                  semantic_techer="hubert_base_general", last_layer_semantic=True,
                  merge_mode="concat", downsample_mode="step_down", semantic_mode="classic",
                  vq_scale=1, semantic_sample_rate=16000)
    torch.manual_seed(3)
    model = hat.HiggsAudioTokenizer(**config, device="cpu")
    d = config["D"]
    model.semantic_dim = model.encoder_semantic_dim = semantic
    model.quantizer_dim = d + semantic
    model.encoder_semantic = Encoder(input_channels=semantic, encode_channels=semantic)
    model.decoder_semantic = Decoder(code_dim=semantic, output_channels=semantic, decode_channels=semantic)
    model.quantizer = ResidualVectorQuantizer(dimension=d + semantic, codebook_dim=8, n_q=8, bins=1024)
    model.fc_prior = torch.nn.Linear(d + semantic, d + semantic)
    model.fc_post1 = torch.nn.Linear(d + semantic, semantic)
    model.fc_post2 = torch.nn.Linear(d + semantic, d)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # random init leaves the codebooks at zero: every frame would be code 0
        for name, buffer in model.named_buffers():
            if name.endswith("embed") or name.endswith("embed_avg"):
                buffer.copy_(torch.randn(buffer.shape, generator=g))
            elif name.endswith("inited"):
                buffer.fill_(1)
    model.eval()
    target = out / "tokenizer"
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.save(model.state_dict(), target / "model.pth")

    t = np.arange(int(1.2 * 24000)) / 24000
    rng = np.random.default_rng(5)
    clip = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    with torch.no_grad():
        semantic_features = model.get_regress_target(torch.from_numpy(clip)[None, None])
        codes = model.encode(clip, sr=24000)  # [K, T]
        waveform = model.decode(codes[None])  # [1, 1, samples]
    save_file({
        "clip": torch.from_numpy(clip),
        "semantic_features": semantic_features[0].float().contiguous(),  # [frames, hidden]
        "codes": codes.long().contiguous(),
        "waveform": torch.from_numpy(np.ascontiguousarray(waveform[0, 0])).float(),
    }, str(out / "tokenizer.safetensors"))
    print(f"tokenizer: {codes.shape[1]} frames x {codes.shape[0]} codebooks, "
          f"{len(model.state_dict())} weights")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import transformers

    assert transformers.__version__.startswith("4.46"), "run in upstream's venv (transformers 4.46)"
    make_generation(args.out)
    make_tokenizer(args.out)
    versions = {"boson-multimodal": "0.1.1", "transformers": transformers.__version__,
                "torch": torch.__version__}
    (args.out / "VERSIONS.json").write_text(json.dumps(versions, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
