"""A tiny random-weight Higgs Audio bundle in the real volume layout.

It loads through exactly the code path of the real checkpoint, so tests, `make run` and the
benchmarks exercise the real loader, prompt builder, decode loop and vocoder in seconds. Its
audio is noise: the weights are random."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from boson_multimodal.layout import DEMO_MARKER, ModelPaths

SAMPLE_RATE = 24_000

# Llama-3 specials plus the ones the Higgs prompt format uses.
SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|audio_out_bos|>",
    "<|reserved_special_token_6|>",  # the audio delay token
    "<|AUDIO|>",
    "<|AUDIO_OUT|>",
    "<|scene_desc_start|>",
    "<|scene_desc_end|>",
]

DEMO_VOICES = {
    "belinda": ("Twas the night before my birthday. Hooray! It's almost here!", 210.0),
    "en_man": ("The sun rises in the east and sets in the west.", 115.0),
}

WARNING = (
    "This is a DEMO bundle with RANDOM weights: every sound it makes is noise.\n"
    "For real speech put the Higgs Audio V2 weights on the volume (see the README):\n"
    "  $MODEL_PATH/bosonai/higgs-audio-v2-generation-3B-base/\n"
    "  $MODEL_PATH/bosonai/higgs-audio-v2-tokenizer/\n"
    "  $MODEL_PATH/voice_prompts/<name>.wav + <name>.txt\n"
)


def build_text_tokenizer():
    """Byte-level BPE over the 256 byte symbols (no merges) plus the special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    return tokenizer


def special_token_ids(tokenizer) -> dict[str, int]:
    """The config's token-id fields, for a tokenizer with `SPECIAL_TOKENS`."""
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        pad_token_id=ids("<|end_of_text|>"),
        bos_token_id=ids("<|begin_of_text|>"),
        eos_token_id=ids("<|eot_id|>"),
        audio_token_id=ids("<|AUDIO_OUT|>"),
        audio_bos_token_id=ids("<|audio_out_bos|>"),
        audio_delay_token_id=ids("<|reserved_special_token_6|>"),
    )


def generation_config(tokenizer):
    from transformers import HiggsAudioV2Config

    return HiggsAudioV2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=8192,
        num_codebooks=8,
        codebook_size=1026,
        **special_token_ids(tokenizer),
    )


def audio_tokenizer_config():
    from transformers import HiggsAudioV2TokenizerConfig

    return HiggsAudioV2TokenizerConfig(
        target_bandwidths=[0.5, 1, 1.5, 2],  # ends at 2 kbps: 8 quantizers of 1024 codes
        codebook_dim=8,
        acoustic_model_config=dict(
            encoder_hidden_size=4,
            downsampling_ratios=[8, 5, 4, 2, 3],  # hop 960: 25 frames per second at 24 kHz
            decoder_hidden_size=64,
            upsampling_ratios=[8, 5, 4, 2, 3],
            hidden_size=16,
        ),
        semantic_model_config=dict(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            conv_dim=[8] * 7,
            conv_stride=[5, 2, 2, 2, 2, 2, 2],  # multiplies to 320, as HuBERT's does
            conv_kernel=[10, 3, 3, 3, 3, 2, 2],
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
        ),
    )


def voice_clip(pitch: float, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A voiced, vowel-like clip: harmonics of a gliding pitch under a syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = pitch * (1.0 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = (700.0, 1200.0, 2600.0)
    wave = np.zeros_like(t)
    for h in range(1, 25):
        freq = h * pitch
        gain = sum(np.exp(-((freq - f) / 250.0) ** 2) for f in formants) + 0.05 / h
        wave += gain * np.sin(h * phase)
    envelope = 0.55 - 0.45 * np.cos(2 * np.pi * 3.0 * t)
    wave = wave * envelope + 0.01 * rng.standard_normal(t.shape)
    return (0.4 * wave / np.abs(wave).max()).astype(np.float32)


def write_demo_bundle(root: str | Path, seed: int = 0) -> ModelPaths:
    from boson_multimodal.resample import provide_torchaudio

    provide_torchaudio()
    from transformers import HiggsAudioV2ForConditionalGeneration
    from transformers.models.higgs_audio_v2_tokenizer.modeling_higgs_audio_v2_tokenizer import (
        HiggsAudioV2TokenizerModel,
    )

    paths = ModelPaths.under(root)
    torch.manual_seed(seed)
    tokenizer = build_text_tokenizer()
    config = generation_config(tokenizer)
    model = HiggsAudioV2ForConditionalGeneration(config).eval()
    with torch.no_grad():  # EOS logits of 0 lose to the random codes: the model speaks on until
        # its duration bound, so tests get long streams; tests that need an end bias it
        head = model.audio_lm_head.weight.view(config.num_codebooks, config.codebook_size, -1)
        head[:, config.audio_stream_eos_id].zero_()
    paths.generation.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(paths.generation)
    tokenizer.save_pretrained(paths.generation)

    audio_tokenizer = HiggsAudioV2TokenizerModel(audio_tokenizer_config()).eval()
    with torch.no_grad():  # random init leaves the codebooks at zero: every code would be 0
        for quantizer in audio_tokenizer.quantizer.quantizers:
            quantizer.codebook.embed.normal_()
            quantizer.codebook.embed_avg.copy_(quantizer.codebook.embed)
    audio_tokenizer.save_pretrained(paths.tokenizer)

    paths.voices.mkdir(parents=True, exist_ok=True)
    for i, (name, (transcript, pitch)) in enumerate(sorted(DEMO_VOICES.items())):
        sf.write(paths.voices / f"{name}.wav", voice_clip(pitch, seed=seed + i), SAMPLE_RATE)
        (paths.voices / f"{name}.txt").write_text(transcript + "\n", encoding="utf-8")
    (paths.root / DEMO_MARKER).write_text(WARNING, encoding="utf-8")
    (paths.root / "demo_bundle.json").write_text(json.dumps({"seed": seed}), encoding="utf-8")
    return paths
