"""Parity fixtures made with upstream's own code (boson-multimodal 0.1.1).

Runs ONLY in its own virtualenv (upstream pins transformers<4.47; see README.md here):

    python tools/upstream_parity/make_fixtures.py tests/fixtures/upstream

It builds tiny random-weight models with upstream's classes, saves them in the ORIGINAL bosonai
layout (generation: `model_type: higgs_audio` + safetensors with upstream names; audio
tokenizer: xcodec-style config.json + model.pth), writes voice prompt clips, and records what
upstream computes, end to end, the way its generation example runs a request:

- tokenizer.safetensors: reference clips of every length class mod 960 (24 kHz) and at 8, 16,
  22.05, 44.1 and 48 kHz (one stereo), librosa's loaded/resampled waveform for some, upstream's
  codes for all; a 1.2 s clip's semantic features, codes, and the waveform decoded from them.
- generation.safetensors + generation.json: for each case of the prompt matrix ({0, 1, 2 voices}
  x {scene, none} x {[SPEAKERn] tags, none}), a long generation across KV buckets, two streams
  that reach end-of-stream (codebook 0 first; a later codebook first) and a two-chunk request:
  the normalised transcript, every chunk's prompt ids and prompt audio, greedy delayed frames,
  the kept codes (delay reverted, clipped, first and last step dropped), and for some cases the
  audio logits of frames 1, 2 and the last, and the waveform upstream's tokenizer decodes from
  the kept codes.

The message rules of upstream's `examples/generation.py` (not part of the PyPI package) are
restated below in this script's own words: which system turn, which voice turns, the transcript
normalisation. Everything else (tokenisation of the chat, collation, the delay pattern,
`generate`, the audio tokenizer) is upstream's code.

Where upstream hard-codes full-size widths (DAC encoder 64, decoder 1024, a 768-wide HuBERT
from the hub) the script builds upstream's own classes smaller; the converter infers every width
from the weights, so the same code path serves the real checkpoint.

One file on purpose, over the usual length: a standalone script for upstream's virtualenv,
where none of this project's code can be imported, that reads top to bottom as the recipe of
the fixtures.
"""

# long: one standalone script for upstream's virtualenv (see above)

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import types
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SPECIAL_TOKENS = [  # <|eot_id|> first: id 0, which a zeroed text head always picks (see below)
    "<|eot_id|>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|audio_bos|>", "<|audio_eos|>", "<|audio_out_bos|>", "<|reserved_special_token_6|>",
    "<|AUDIO|>", "<|AUDIO_OUT|>", "<|scene_desc_start|>", "<|scene_desc_end|>",
]
NUM_CODEBOOKS = 8
SCENE = "Audio is recorded from a quiet room."
PLAIN = "Hello there (my friend)，it is 21°C today  [laugh] and the sky is clear"
TAGGED = "[SPEAKER0] Good morning， how are you?\n\n[SPEAKER1] Very well (thanks) [cough]\n[SPEAKER0] Great"
LONG = ("This is a longer passage of text, read slowly and with care, so that the generation runs past "
        "several key value cache buckets before it is stopped by the frame budget of the request.")
CHUNKED = "First we talk about the weather today. Then we talk about the news of the whole day."
CHUNKS = ["First we talk about the weather today.", "Then we talk about the news of the whole day."]
VOICES = {  # name: (sample rate, samples, pitch, transcript)
    "alpha": (24000, 30720 + 200, 170.0, "The sun rises in the east and sets in the west."),
    "beta": (16000, 17000, 120.0, "Twas the night before my birthday, hooray!"),
}

# -- upstream's example rules, restated ---------------------------------------------------------

MULTI_SPEAKER_INSTRUCTION = (
    "You are an AI assistant designed to convert text into speech.\n"
    "If the user's message includes a [SPEAKER*] tag, do not read out the tag and generate speech "
    "for the following text, using the specified voice.\n"
    "If no speaker tag is present, select a suitable voice on your own."
)
FULL_WIDTH = {
    "，": ", ", "。": ".", "：": ":", "；": ";", "？": "?", "！": "!", "（": "(", "）": ")",
    "【": "[", "】": "]", "《": "<", "》": ">", "“": '"', "”": '"', "‘": "'", "’": "'",
    "、": ",", "—": "-", "…": "...", "·": ".", "「": '"', "」": '"', "『": '"', "』": '"',
}
SOUND_EVENTS = {
    "[laugh]": "<SE>[Laughter]</SE>", "[humming start]": "<SE>[Humming]</SE>",
    "[humming end]": "<SE_e>[Humming]</SE_e>", "[music start]": "<SE_s>[Music]</SE_s>",
    "[music end]": "<SE_e>[Music]</SE_e>", "[music]": "<SE>[Music]</SE>",
    "[sing start]": "<SE_s>[Singing]</SE_s>", "[sing end]": "<SE_e>[Singing]</SE_e>",
    "[applause]": "<SE>[Applause]</SE>", "[cheering]": "<SE>[Cheering]</SE>", "[cough]": "<SE>[Cough]</SE>",
}


def normalise(text: str) -> str:
    for a, b in FULL_WIDTH.items():
        text = text.replace(a, b)
    text = text.replace("(", " ").replace(")", " ")
    text = text.replace("°F", " degrees Fahrenheit").replace("°C", " degrees Celsius")
    for a, b in SOUND_EVENTS.items():
        text = text.replace(a, b)
    text = "\n".join(" ".join(line.split()) for line in text.split("\n") if line.strip()).strip()
    if not text.endswith((".", "!", "?", ",", ";", '"', "'", "</SE_e>", "</SE>")):
        text += "."
    return text


def context_messages(scene, voices, raw_text):
    """System and voice-prompt messages, as upstream's example builds them."""
    from boson_multimodal.data_types import AudioContent, Message

    messages = []
    if voices:
        if scene:
            messages.append(Message("system", "Generate audio following instruction.\n\n"
                                              f"<|scene_desc_start|>\n{scene}\n<|scene_desc_end|>"))
        for i, name in enumerate(voices):
            transcript = VOICES[name][3]
            messages.append(Message("user", f"[SPEAKER{i}] {transcript}" if len(voices) > 1 else transcript))
            messages.append(Message("assistant", AudioContent(audio_url=name)))
        return messages
    tags = sorted(set(re.findall(r"\[(SPEAKER\d+)\]", raw_text)))
    if len(tags) > 1:
        cast = "\n".join(f"{tag}: {'feminine' if i % 2 == 0 else 'masculine'}" for i, tag in enumerate(tags))
        desc = "\n\n".join(([scene] if scene else []) + [cast])
        return [Message("system", f"{MULTI_SPEAKER_INSTRUCTION}\n\n<|scene_desc_start|>\n{desc}\n<|scene_desc_end|>")]
    system = "Generate audio following instruction."
    if scene:
        system += f"\n\n<|scene_desc_start|>\n{scene}\n<|scene_desc_end|>"
    return [Message("system", system)]


# -- models ------------------------------------------------------------------------------------


def text_tokenizer():
    """Byte-level BPE WITH merges (trained on a small corpus), plus the Llama-3 style specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    corpus = [PLAIN, TAGGED, LONG, CHUNKED, SCENE, MULTI_SPEAKER_INSTRUCTION, normalise(PLAIN), normalise(TAGGED),
              "Generate audio following instruction.", "system user assistant",
              *[v[3] for v in VOICES.values()], "SPEAKER0: feminine\nSPEAKER1: masculine"] * 3
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|begin_of_text|>",
                                  eos_token="<|eot_id|>", pad_token="<|end_of_text|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    assert tok.convert_tokens_to_ids("<|eot_id|>") == 0
    assert len(tok.tokenize("Hello there")) < len("Hello there"), "the tokenizer has no merges"
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


def make_generation_model(tok):
    from boson_multimodal.model.higgs_audio import HiggsAudioConfig, HiggsAudioModel

    ids = tok.convert_tokens_to_ids
    text_config = dict(
        model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,  # GQA: 2 per KV head
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
    with torch.no_grad():
        # after its audio, upstream's generate goes on in text mode: a zero text head makes it
        # pick token 0 (<|eot_id|>), so one audio segment is generated, as a trained model does
        model.audio_decoder_proj.text_lm_head.weight.zero_()
        eos_rows(model).zero_()  # model A never ends: its EOS logit is exactly 0
    return model


def eos_rows(model) -> torch.Tensor:
    head = model.audio_decoder_proj.audio_lm_head.weight.view(NUM_CODEBOOKS, 1026, -1)
    return head[:, 1025]


# -- the audio tokenizer -----------------------------------------------------------------------


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


def make_audio_tokenizer(out: Path):
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
    return model


def signal(rate: int, samples: int, pitch: float, seed: int, channels: int = 1) -> np.ndarray:
    t = np.arange(samples) / rate
    rng = np.random.default_rng(seed)
    waves = [(0.3 * np.sin(2 * np.pi * pitch * (1 + 0.1 * c) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
              + 0.02 * rng.standard_normal(t.shape)) for c in range(channels)]
    return np.stack(waves).astype(np.float32) if channels > 1 else waves[0].astype(np.float32)


def upstream_load(data: np.ndarray, rate: int) -> np.ndarray:
    """What upstream's loaders see: librosa.load(file, mono=True, sr=24000) of a float WAV."""
    import librosa

    buffer = io.BytesIO()
    sf.write(buffer, data.T if data.ndim > 1 else data, rate, format="WAV", subtype="FLOAT")
    buffer.seek(0)
    wave, _ = librosa.load(buffer, sr=24000, mono=True)
    return wave


def make_tokenizer_fixtures(out: Path, model) -> dict:
    from safetensors.torch import save_file

    tensors, meta = {}, {"remainders": [], "rates": []}
    clip = signal(24000, int(1.2 * 24000), 180.0, 5)
    with torch.no_grad():
        tensors["clip"] = torch.from_numpy(clip)
        tensors["semantic_features"] = model.get_regress_target(torch.from_numpy(clip)[None, None])[0].float()
        codes = model.encode(clip, sr=24000)  # [K, T]
        tensors["codes"] = codes.long()
        tensors["waveform"] = torch.from_numpy(np.ascontiguousarray(model.decode(codes[None])[0, 0])).float()
        # every length class mod 960 at 24 kHz: slices of one signal
        base = signal(24000, 19200 + 960, 150.0, 6)
        tensors["remainder_signal"] = torch.from_numpy(base)
        for length in [19200 + r for r in range(0, 960, 20)] + [4800 + r for r in (0, 130, 250, 480, 700, 959)]:
            tensors[f"remainder/{length}"] = model.encode(base[:length], sr=24000).long()
            meta["remainders"].append(length)
        # other sample rates (and channels), loaded as upstream's loaders do
        for rate, length, channels in [(8000, 3200, 1), (16000, 6401, 1), (16000, 7000, 1), (22050, 9999, 1),
                                       (44100, 18000, 1), (44100, 13230, 2), (48000, 19201, 1), (48000, 19200, 1)]:
            name = f"rate/{rate}/{length}/{channels}"
            data = signal(rate, length, 140.0, rate % 97, channels)
            loaded = upstream_load(data, rate)
            tensors[f"{name}/signal"] = torch.from_numpy(data)
            tensors[f"{name}/loaded"] = torch.from_numpy(np.ascontiguousarray(loaded))
            tensors[f"{name}/codes"] = model.encode(loaded, sr=24000).long()
            meta["rates"].append([rate, length, channels])
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "tokenizer.safetensors"))
    (out / "tokenizer.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"tokenizer: {len(meta['remainders'])} length classes, {len(meta['rates'])} rate cases")
    return meta


# -- generation: upstream's example, one case ----------------------------------------------------


def write_voices(out: Path) -> None:
    target = out / "voice_prompts"
    target.mkdir(parents=True, exist_ok=True)
    for i, (name, (rate, samples, pitch, transcript)) in enumerate(VOICES.items()):
        sf.write(target / f"{name}.wav", signal(rate, samples, pitch, 20 + i), rate, subtype="FLOAT")
        (target / f"{name}.txt").write_text(transcript + "\n")


def upstream_collator(config):
    from boson_multimodal.data_collator.higgs_audio_collator import HiggsAudioSampleCollator

    return HiggsAudioSampleCollator(
        whisper_processor=None, encode_whisper_embed=False,
        audio_in_token_id=config.audio_in_token_idx, audio_out_token_id=config.audio_out_token_idx,
        audio_stream_bos_id=1024, audio_stream_eos_id=1025, pad_token_id=config.pad_token_id,
        return_audio_in_tokens=False, use_delay_pattern=True, audio_num_codebooks=NUM_CODEBOOKS, round_to=1,
    )


def chunk_batch(tok, collator, messages: list, postfix: list[int], context: list[torch.Tensor]) -> dict:
    """Upstream's collated batch for the chat so far, ready for the assistant's audio, with
    `context` (codes [K, n] of the voices, then of the chunks generated so far) as its audio."""
    from boson_multimodal.data_types import ChatMLSample
    from boson_multimodal.dataset.chatml_dataset import ChatMLDatasetSample, prepare_chatml_sample

    tokens, _, _, _ = prepare_chatml_sample(ChatMLSample(messages=messages), tok)
    sample = ChatMLDatasetSample(
        input_ids=torch.LongTensor(list(tokens) + postfix), label_ids=None,
        audio_ids_concat=torch.cat(context, dim=1) if context else None,
        audio_ids_start=torch.cumsum(torch.tensor([0] + [c.shape[1] for c in context]), 0) if context else None,
        audio_waveforms_concat=None, audio_waveforms_start=None, audio_sample_rate=None,
        audio_speaker_indices=None,
    )
    return asdict(collator([sample]))


def generate_chunk(model, tok, batch: dict, max_new_tokens: int) -> tuple[torch.Tensor, list]:
    """Upstream's greedy `generate`: the delayed frames [K, n] (BOS first), and the audio head's
    output for the last position of every forward call."""
    captured: list[torch.Tensor | None] = []
    hook = model.audio_decoder_proj.audio_lm_head.register_forward_hook(
        lambda module, args, output: captured.append(
            output.detach().reshape(-1, output.shape[-1])[-1].clone() if output.numel() else None))
    with torch.no_grad():
        outputs = model.generate(**batch, max_new_tokens=max_new_tokens, use_cache=True,
                                 do_sample=False, tokenizer=tok, ras_win_len=None,
                                 stop_strings=["<|end_of_text|>", "<|eot_id|>"])
    hook.remove()
    assert len(outputs[1]) == 1, "one audio segment per chunk"
    return outputs[1][0], captured


def step_logits(frames: torch.Tensor, captured: list) -> torch.Tensor:
    """The audio logits of frames 1, 2 and the last, once the calls are checked to align with
    the frames."""
    n = frames.shape[1]
    # call 0 is the prefill, whose logits upstream does not use (frame 0 is forced); call i
    # scores frame i
    logits = torch.stack([captured[i].view(NUM_CODEBOOKS, 1026) for i in [1, 2, n - 1]]).float()
    for i in range(1, min(n, 6)):  # the call <-> frame alignment: codebook 0 is greedy from frame 1
        assert frames[0, i] == captured[i].view(NUM_CODEBOOKS, 1026)[0].argmax() or frames[0, i] == 1025
    return logits


def run_case(model, tok, audio_tokenizer, voice_dir: Path, case: dict) -> tuple[dict, dict]:
    from boson_multimodal.data_types import AudioContent, Message
    from boson_multimodal.model.higgs_audio.utils import revert_delay_pattern

    collator = upstream_collator(model.config)
    text = normalise(case["text"])
    messages = context_messages(case["scene"], case["voices"], case["text"])
    voice_codes = [audio_tokenizer.encode(str(voice_dir / f"{name}.wav")) for name in case["voices"]]
    chunks = case.get("chunks") or [text]
    generated, turns, tensors = [], [], {}
    postfix = tok.encode("<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>",
                         add_special_tokens=False)
    for index, chunk in enumerate(chunks):
        turns.append(Message("user", chunk))
        batch = chunk_batch(tok, collator, messages + turns, postfix, voice_codes + generated)
        frames, captured = generate_chunk(model, tok, batch, case["max_new_tokens"])
        kept = revert_delay_pattern(frames).clip(0, 1023)[:, 1:-1]
        logits = step_logits(frames, captured)
        prefix = f"chunk{index}"
        tensors[f"{prefix}/prompt_ids"] = batch["input_ids"][0]
        tensors[f"{prefix}/prompt_audio"] = (batch["audio_out_ids"].T if batch["audio_out_ids"] is not None
                                             else torch.empty((0, NUM_CODEBOOKS), dtype=torch.long))
        tensors[f"{prefix}/frames"] = frames.T
        tensors[f"{prefix}/kept"] = kept.T
        if case.get("logits"):
            tensors[f"{prefix}/step_logits"] = logits
        generated.append(kept)
        turns.append(Message("assistant", AudioContent(audio_url="")))
    if case.get("waveform"):
        all_codes = torch.cat(generated, dim=1)
        tensors["waveform"] = torch.from_numpy(np.ascontiguousarray(audio_tokenizer.decode(all_codes[None])[0, 0]))
    for i, codes in enumerate(voice_codes):
        tensors[f"voice{i}/codes"] = codes.T
    meta = {**case, "normalised": text, "chunks": chunks,
            "frames": [int(tensors[f"chunk{i}/frames"].shape[0]) for i in range(len(chunks))],
            "ended": [bool((tensors[f"chunk{i}/frames"] == 1025).any()) for i in range(len(chunks))]}
    return meta, tensors


def find_eos_rows(model, tok, audio_tokenizer, voice_dir, case, first_codebook: int) -> torch.Tensor:
    """EOS head rows (all zero but one codebook's) with which the case's greedy stream ends
    between frames 20 and 90, `first_codebook` emitting EOS first."""
    base = eos_rows(model).clone()
    norm = model.audio_decoder_proj.audio_lm_head.weight.norm(dim=1).mean()
    for seed in range(400):
        g = torch.Generator().manual_seed(1000 + seed)
        row = torch.randn(base.shape[1], generator=g)
        row = row / row.norm() * norm * (0.8 + 0.05 * (seed % 40))
        with torch.no_grad():
            eos_rows(model).zero_()
            eos_rows(model)[first_codebook] = row
        meta, tensors = run_case(model, tok, audio_tokenizer, voice_dir, {**case, "max_new_tokens": 100})
        frames = tensors["chunk0/frames"]
        if not meta["ended"][0] or frames.shape[0] >= 100:
            continue
        first = int((frames == 1025).any(dim=1).nonzero()[0])
        # in that frame upstream makes the codebooks below the first emitter EOS too
        if 20 <= first <= 90 and int((frames[first] == 1025).sum()) - 1 == first_codebook:
            print(f"EOS rows for codebook {first_codebook}: seed {seed}, first EOS at frame {first}")
            return eos_rows(model).clone()
    raise RuntimeError(f"no EOS rows found for codebook {first_codebook}")


def make_generation(out: Path, audio_tokenizer) -> None:
    from safetensors.torch import save_file

    tok = text_tokenizer()
    model = make_generation_model(tok)
    target = out / "generation"
    model.save_pretrained(target, safe_serialization=True)
    tok.save_pretrained(target)
    write_voices(out)
    voice_dir = out / "voice_prompts"

    cases = {}
    for voices in ([], ["alpha"], ["alpha", "beta"]):
        for scene in (SCENE, None):
            for text in (TAGGED, PLAIN):
                name = f"v{len(voices)}-{'scene' if scene else 'noscene'}-{'tags' if text is TAGGED else 'plain'}"
                cases[name] = dict(voices=voices, scene=scene, text=text, max_new_tokens=40, model="base",
                                   logits=name in ("v0-scene-tags", "v2-noscene-plain"))
    cases["v1-scene-plain"]["waveform"] = True
    cases["long"] = dict(voices=["alpha"], scene=SCENE, text=LONG, max_new_tokens=420, model="base", logits=True)
    ending = dict(voices=["alpha"], scene=SCENE, text=PLAIN, model="base")
    rows = {"eos_first": find_eos_rows(model, tok, audio_tokenizer, voice_dir, ending, 0),
            "eos_later": find_eos_rows(model, tok, audio_tokenizer, voice_dir, ending, 3)}
    final = dict(max_new_tokens=200, waveform=True)
    cases["eos_first"] = {**ending, **final, "model": "eos_first", "logits": True}
    cases["eos_later"] = {**ending, **final, "model": "eos_later", "logits": True}
    cases["eos_dialogue"] = dict(voices=["alpha", "beta"], scene=None, text=TAGGED, model="eos_later", **final)
    cases["chunked"] = dict(voices=["alpha"], scene=SCENE, text=CHUNKED, chunks=CHUNKS, model="eos_first",
                            chunk_max_word_num=10, **{**final, "max_new_tokens": 120})

    all_tensors, all_meta = {}, {}
    for name, case in cases.items():
        with torch.no_grad():
            eos_rows(model).copy_(rows[case["model"]] if case["model"] in rows else torch.zeros_like(rows["eos_first"]))
        meta, tensors = run_case(model, tok, audio_tokenizer, voice_dir, case)
        all_meta[name] = meta
        all_tensors.update({f"{name}/{k}": v for k, v in tensors.items()})
        print(f"{name}: frames {meta['frames']}, ended {meta['ended']}")
    for name, row in rows.items():
        all_tensors[f"eos_rows/{name}"] = row
    assert all_meta["eos_first"]["ended"] == [True] and all_meta["eos_later"]["ended"] == [True]
    save_file({k: v.contiguous() for k, v in all_tensors.items()}, str(out / "generation.safetensors"))
    (out / "generation.json").write_text(json.dumps(all_meta, indent=2, ensure_ascii=False) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import transformers

    assert transformers.__version__.startswith("4.46"), "run in upstream's venv (transformers 4.46)"
    audio_tokenizer = make_audio_tokenizer(args.out)
    make_tokenizer_fixtures(args.out, audio_tokenizer)
    make_generation(args.out, audio_tokenizer)
    versions = {"boson-multimodal": "0.1.1", "transformers": transformers.__version__,
                "torch": torch.__version__}
    (args.out / "VERSIONS.json").write_text(json.dumps(versions, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
