"""A tiny random-weight Whisper in transformers' layout (`higgs-tts demo-asr DIR`): it loads
through exactly the code path of a real one (model, processor, generation config with the
alignment heads word timings need), in a second. What it hears is nonsense: the weights are
random."""

from __future__ import annotations

from pathlib import Path

LANGUAGES = ("en", "zh", "de", "fr", "es", "ja")
TIMESTAMPS = 1501  # <|0.00|> to <|30.00|>, as every Whisper has
# the demo's size, and (for bench/verify.py) the real models' shapes with random weights: mel
# bins, d_model, encoder and decoder layers, heads, feed-forward width (the vocabulary stays the
# demo's: what a step costs in the output projection is the one difference)
SHAPES = {
    "demo": (80, 64, 2, 2, 2, 128),
    "tiny": (80, 384, 4, 4, 6, 1536),  # openai/whisper-tiny
    "turbo": (128, 1280, 32, 4, 20, 5120),  # openai/whisper-large-v3-turbo
}


def write_demo_asr(directory: Path, seed: int = 0, shape: str = "demo") -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    directory.mkdir(parents=True, exist_ok=True)
    core = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))},
                                merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    eot = "<|endoftext|>"
    tokenizer = WhisperTokenizerFast(tokenizer_object=core, bos_token=eot, eos_token=eot, unk_token=eot,
                                     pad_token=eot)
    languages = [f"<|{code}|>" for code in LANGUAGES]
    specials = ["<|startoftranscript|>", *languages, "<|translate|>", "<|transcribe|>", "<|startoflm|>",
                "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
                *(f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMPS))]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    ids = tokenizer.convert_tokens_to_ids
    mels, width, encoder_layers, decoder_layers, heads, ffn = SHAPES[shape]
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=mels, encoder_layers=encoder_layers,
                           decoder_layers=decoder_layers, encoder_attention_heads=heads,
                           decoder_attention_heads=heads, d_model=width, encoder_ffn_dim=ffn,
                           decoder_ffn_dim=ffn, max_source_positions=1500, max_target_positions=448,
                           pad_token_id=ids(eot), bos_token_id=ids(eot), eos_token_id=ids(eot),
                           decoder_start_token_id=ids("<|startoftranscript|>"), begin_suppress_tokens=[],
                           suppress_tokens=[])
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    generation = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, bos_token_id=ids(eot), eos_token_id=ids(eot),
        pad_token_id=ids(eot), begin_suppress_tokens=[], suppress_tokens=[], max_length=448,
        alignment_heads=[[decoder_layers - 1, 0], [decoder_layers - 1, 1]],  # heads that align tokens with time
        lang_to_id={token: ids(token) for token in languages},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=True, max_initial_timestamp_index=50,
    )
    model.generation_config = generation
    model.save_pretrained(directory)
    generation.save_pretrained(directory)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=mels), tokenizer).save_pretrained(directory)
    (directory / "DEMO").write_text("a tiny random-weight Whisper: what it hears is nonsense\n")
    return directory
