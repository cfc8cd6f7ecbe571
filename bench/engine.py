"""Engine benchmark: prefill, decode ms/step, frames/s, real-time factor, time to first audio,
peak memory and achieved GB/s, for this engine and for transformers' own `generate`.

    python bench/engine.py                       # the tiny demo model, CPU
    python bench/engine.py --preset mid          # hidden 1024, 8 layers (bench/serving.py's mid)
    python bench/engine.py --full-size-random    # the real checkpoint's shapes, random weights (GPU)

On CUDA the engine runs twice: with its CUDA graphs (as deployed) and without (HIGGS_CUDA_GRAPHS=off).
Time to first audio is measured with a voice prefilled from scratch and with the voice's prompt
prefix already in the prefix cache (HIGGS_PREFIX_CACHE_MB).

Decode runs a fixed number of steps with the stop token disabled (speed does not depend on the
weights' values). Bytes per step count what one audio step must read: attention, the audio FFN,
norms and the audio head (the text FFN and text embeddings are not read), plus the KV cache."""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from boson_multimodal.batch import BatchDecoder  # noqa: E402
from boson_multimodal.codec import AudioCodec  # noqa: E402
from boson_multimodal.demo import voice_clip  # noqa: E402
from boson_multimodal.prompt import PromptBuilder, Turn, system_turn, voice_turns  # noqa: E402
from boson_multimodal.sampling import DecodeStats, SamplingConfig  # noqa: E402

TEXT_20_WORDS = ("The quick brown fox jumps over the lazy dog while the sun sets slowly "
                 "behind the quiet hills of the old town.")
FRAME_RATE = 25


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)


def build_tiny(device):
    from boson_multimodal.demo import write_demo_bundle
    from boson_multimodal.loader import load_bundle

    paths = write_demo_bundle(tempfile.mkdtemp(prefix="higgs-bench-"))
    bundle = load_bundle(paths, device=device)
    return bundle.model, bundle.tokenizer, bundle.audio_tokenizer


def build_full_size(device):
    """The published checkpoint's shapes with random weights."""
    from boson_multimodal.demo import build_text_tokenizer, special_token_ids
    from boson_multimodal.resample import provide_torchaudio

    provide_torchaudio()
    from transformers import HiggsAudioV2Config, HiggsAudioV2ForConditionalGeneration, HiggsAudioV2TokenizerConfig
    from transformers.models.higgs_audio_v2_tokenizer.modeling_higgs_audio_v2_tokenizer import (
        HiggsAudioV2TokenizerModel,
    )

    tokenizer = build_text_tokenizer()
    # defaults: hidden 3072, 28 layers, 24 heads, 8 KV heads, FFN 8192, vocab 128256
    config = HiggsAudioV2Config(codebook_size=1026, **special_token_ids(tokenizer))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = HiggsAudioV2ForConditionalGeneration(config).eval()
    torch.set_default_dtype(torch.float32)
    codec_config = HiggsAudioV2TokenizerConfig(
        target_bandwidths=[0.5, 1, 1.5, 2],
        acoustic_model_config=dict(downsampling_ratios=[8, 5, 4, 2, 3], upsampling_ratios=[8, 5, 4, 2, 3]),
    )
    codec = HiggsAudioV2TokenizerModel(codec_config).to(device).eval()
    with torch.no_grad():
        for q in codec.quantizer.quantizers:
            q.codebook.embed.normal_()
    return model, tokenizer, codec


def build_mid(device: torch.device):
    from transformers import HiggsAudioV2ForConditionalGeneration

    from boson_multimodal.demo import build_text_tokenizer, generation_config, write_demo_bundle
    from boson_multimodal.loader import load_bundle

    tokenizer = build_text_tokenizer()
    config = generation_config(tokenizer)
    config.update(dict(hidden_size=1024, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                       head_dim=128, intermediate_size=2816, num_codebooks=8, codebook_size=1026))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = HiggsAudioV2ForConditionalGeneration(config).to(dtype).eval()
    codec = load_bundle(write_demo_bundle(tempfile.mkdtemp(prefix="higgs-bench-")), device=device).audio_tokenizer
    return model, tokenizer, codec


def build(preset: str, device):
    """(model, text tokenizer, audio tokenizer) for a preset (bench/serving.py's presets)."""
    if preset == "mid":
        return build_mid(device)
    return (build_full_size if preset == "full-size-random" else build_tiny)(device)


def bytes_per_step(model, cache_positions: int) -> tuple[int, int]:
    weights = 0
    for name, p in model.named_parameters():
        if ".mlp." in name or "embed_tokens" in name or "text_lm_head" in name or name.endswith(
            ("input_layernorm.weight", "post_attention_layernorm.weight")) and "audio" not in name:
            continue
        if "embed_audio_tokens" in name:
            weights += p.shape[-1] * p.element_size() * model.config.num_codebooks  # 8 rows
            continue
        weights += p.numel() * p.element_size()
    c = model.config
    element = next(model.parameters()).element_size()
    kv = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * cache_positions * element
    return weights, kv


def bench_engine(model, prompt, steps, device, graphs: bool = True):
    decoder = BatchDecoder(model, max_batch=1,
                           max_cache_len=max(2048, 1 << math.ceil(math.log2(prompt.length + steps + 16))),
                           cuda_graphs="auto" if graphs else "off")
    started = time.perf_counter()
    decoder.warm_up()
    capture_s = time.perf_counter() - started
    sampling = SamplingConfig(temperature=0.7, top_k=50, top_p=0.95, seed=0)
    for _ in decoder.decode(prompt, sampling, max_frames=12, suppress_eos=True):  # warm caches and allocator
        pass
    sync(device)
    stats = DecodeStats()
    t0 = time.perf_counter()
    first_block = None
    frames = 0
    for block in decoder.decode(prompt, sampling, max_frames=steps + 1, sync_every=steps + 1, stats=stats,
                                  suppress_eos=True):
        frames += block.shape[0]
        first_block = first_block or time.perf_counter() - t0
    sync(device)
    total = time.perf_counter() - t0
    decode_s = total - stats.prefill_s
    result = {
        "prefill_ms": stats.prefill_s * 1000,
        "decode_ms_per_step": decode_s / stats.steps * 1000,
        "steps": stats.steps,
        "graph_capture_s": capture_s,
        "cuda_graphs": decoder.executor.use_cuda_graphs,
    }
    decoder.close()
    return result


def bench_ttfa(model, tokenizer, codec_model, prompt_turns, device, cached_voice: bool = False):
    """Time to first audio through the streaming runtime pieces: prefill, the frames the first
    chunk needs (10 + 8 right context + 8 delay), its vocoding. `cached_voice`: the voice's
    turns are a prompt prefix already in the prefix cache (one earlier request put it there)."""
    from boson_multimodal.streaming import StreamingVocoder

    decoder = BatchDecoder(model, max_batch=1, prefix_cache_bytes=(1 << 30) if cached_voice else 0)
    decoder.warm_up()
    codec = AudioCodec(codec_model, device)
    prompt = PromptBuilder(tokenizer, model.config).build(prompt_turns, prefix_turns=len(prompt_turns) - 1)
    if cached_voice:
        for _ in decoder.decode(prompt, SamplingConfig(seed=1), max_frames=2):
            pass
    results = []
    for _ in range(3):
        vocoder = StreamingVocoder(codec)
        stats = DecodeStats()
        sync(device)
        t0 = time.perf_counter()
        for block in decoder.decode(prompt, SamplingConfig(seed=1), max_frames=200, sync_every=8, stats=stats,
                                      suppress_eos=True):
            if vocoder.push(block):
                sync(device)
                results.append((time.perf_counter() - t0, stats.prefill_s))
                break
    hits = decoder.executor.prefix_cache.stats.hits if decoder.executor.prefix_cache is not None else 0
    decoder.close()
    if cached_voice and hits < 3:
        raise RuntimeError(f"the voice prefix was served from the cache {hits} times of 3")
    first, prefill = min(results)
    key = "ttfa_cached_voice" if cached_voice else "ttfa"
    return {f"{key}_ms": first * 1000, f"{key}_prefill_ms": prefill * 1000,
            f"{key}_after_prefill_ms": (first - prefill) * 1000}


def mask_stop_token(model):
    """The stop token never wins in transformers' `generate` either (this engine has
    `suppress_eos`): its logit is set to -inf on the way out of the audio head, whatever the
    hidden state, so both sides run the same number of steps. Returns the hook's handle."""
    c = model.config

    def hook(module, args, output):
        view = output.view(*output.shape[:-1], c.num_codebooks, c.codebook_size)
        view[..., c.audio_stream_eos_id] = -math.inf
        return output

    return model.audio_lm_head.register_forward_hook(hook)


def bench_hf(model, prompt, steps, device, cache_implementation=None):
    kwargs = dict(
        input_ids=prompt.input_ids.to(device),
        audio_input_ids=prompt.audio_frames[None].to(device),
        audio_input_ids_mask=torch.ones(1, prompt.audio_frames.shape[0], dtype=torch.bool, device=device),
        do_sample=True, temperature=0.7, top_k=50, top_p=0.95,
    )
    if cache_implementation:
        kwargs["cache_implementation"] = cache_implementation
    model.generate(**kwargs, max_new_tokens=4)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    model.generate(**kwargs, max_new_tokens=1)
    sync(device)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = model.generate(**kwargs, max_new_tokens=steps + 1)
    sync(device)
    total = time.perf_counter() - t0
    generated = out.shape[1] - prompt.audio_frames.shape[0]
    if generated < steps + 1:
        raise RuntimeError(f"generate stopped after {generated} of {steps + 1} frames: the stop token was not masked")
    return {"prefill_ms": prefill * 1000, "decode_ms_per_step": (total - prefill) / max(1, generated - 1) * 1000,
            "steps": generated - 1}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["tiny", "mid", "full-size-random"], default="tiny")
    parser.add_argument("--full-size-random", dest="preset", action="store_const", const="full-size-random",
                        help="the same as --preset full-size-random")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--hf-steps", type=int, help="steps of transformers' generate (default: --steps)")
    parser.add_argument("--voice-seconds", type=float, default=5.0)
    parser.add_argument("--skip-hf", action="store_true", help="only this engine")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    return parser.parse_args()


def voice_prompt(model, tokenizer, codec_model, device, voice_seconds: float):
    """(turns, prompt, reference codes): a cloned voice saying `TEXT_20_WORDS`."""
    codec = AudioCodec(codec_model, device)
    reference = codec.encode(voice_clip(180.0, seconds=voice_seconds))
    turns = [system_turn("A quiet studio.")]
    turns += voice_turns([("This is the reference clip of the voice to clone.", reference)], False)
    turns += [Turn("user", TEXT_20_WORDS)]
    return turns, PromptBuilder(tokenizer, model.config).build(turns), reference


def run_benches(model, tokenizer, codec_model, turns, prompt, steps: int, device, hf_steps: int | None,
                ) -> dict[str, dict]:
    """One row per engine: this one (on CUDA also without its graphs), then transformers'
    `generate` with its default and static caches (`hf_steps` None: not run)."""
    rows = {}
    rows["higgs-tts"] = bench_engine(model, prompt, steps, device)
    rows["higgs-tts"].update(bench_ttfa(model, tokenizer, codec_model, turns, device))
    rows["higgs-tts"].update(bench_ttfa(model, tokenizer, codec_model, turns, device, cached_voice=True))
    if device.type == "cuda":
        rows["higgs-tts (no CUDA graphs)"] = bench_engine(model, prompt, steps, device, graphs=False)
    if hf_steps:
        mask_stop_token(model)
        rows["transformers generate"] = bench_hf(model, prompt, hf_steps, device)
        try:
            rows["transformers generate (static cache)"] = bench_hf(model, prompt, hf_steps, device, "static")
        except Exception as exc:  # report, do not hide
            rows["transformers generate (static cache)"] = {"error": f"{type(exc).__name__}: {exc}"}
    return rows


def add_rates(rows: dict[str, dict], bytes_read: int) -> None:
    """Frames/s, real-time factor and achieved bandwidth, from each row's decode ms/step."""
    for row in rows.values():
        if "decode_ms_per_step" in row:
            step = row["decode_ms_per_step"] / 1000
            row["frames_per_s"] = 1 / step
            row["rtf"] = step * FRAME_RATE  # seconds of compute per second of audio
            row["x_real_time"] = 1 / row["rtf"]
            row["achieved_GB_per_s"] = bytes_read / step / 1e9


def print_report(summary: dict, steps: int) -> None:
    rows, weights, kv = summary["results"], summary["weight_bytes_per_step"], summary["kv_bytes_per_step"]
    print(f"# {summary['model']} on {summary['device']}, {summary['dtype']}, "
          f"{summary['parameters'] / 1e6:.1f}M params, prompt {summary['prompt_tokens']} tokens, {steps} steps")
    print(f"# bytes read per step: weights {weights / 1e6:.1f} MB + KV {kv / 1e6:.1f} MB; "
          f"peak memory {summary['peak_memory_mb']:.0f} MiB")
    header = ["engine", "prefill ms", "decode ms/step", "frames/s", "x real time", "TTFA ms",
              "TTFA ms, cached voice", "GB/s"]
    print(" | ".join(header))
    for name, row in rows.items():
        if "error" in row:
            print(f"{name} | {row['error']}")
            continue
        print(" | ".join([
            name, f"{row['prefill_ms']:.1f}", f"{row['decode_ms_per_step']:.2f}", f"{row['frames_per_s']:.0f}",
            f"{row['x_real_time']:.1f}", f"{row['ttfa_ms']:.0f}" if "ttfa_ms" in row else "-",
            f"{row['ttfa_cached_voice_ms']:.0f}" if "ttfa_cached_voice_ms" in row else "-",
            f"{row['achieved_GB_per_s']:.2f}",
        ]))
    if "transformers generate" in rows and "decode_ms_per_step" in rows["transformers generate"]:
        speedup = rows["transformers generate"]["decode_ms_per_step"] / rows["higgs-tts"]["decode_ms_per_step"]
        print(f"# decode speed-up over transformers generate: {speedup:.2f}x")


def main() -> int:
    args = parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    model, tokenizer, codec_model = build(args.preset, device)
    turns, prompt, reference = voice_prompt(model, tokenizer, codec_model, device, args.voice_seconds)
    weights, kv = bytes_per_step(model, prompt.length + args.steps // 2)
    rows = run_benches(model, tokenizer, codec_model, turns, prompt, args.steps, device,
                       None if args.skip_hf else args.hf_steps or args.steps)
    add_rates(rows, weights + kv)
    summary = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "model": {"tiny": "tiny demo", "mid": "mid random", "full-size-random": "full-size random"}[args.preset],
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "prompt_tokens": prompt.length,
        "voice_frames": int(reference.shape[0]),
        "weight_bytes_per_step": weights,
        "kv_bytes_per_step": kv,
        "peak_memory_mb": peak_memory_mb(device),
        "torch": torch.__version__,
        "results": rows,
    }
    print_report(summary, args.steps)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
