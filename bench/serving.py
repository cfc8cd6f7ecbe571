"""Serving benchmark: many streams at once through the batched engine, against the same requests
served one at a time, in the same run. Prints one JSON object per line.

    python bench/serving.py --preset mid --streams 1,4,8,16 --steps 200 --json
    python bench/serving.py --preset full-size-random --streams 1,4,8,16   # a GPU

Each stream is a request with a voice prompt of about 5 s and a sentence to say; all of a run's
requests arrive together. A request decodes `--steps` frames (the stop token is suppressed, so
every run does the same work) and turns them into audio as they come, as the service does:
time to first audio is from the common arrival to the request's first audio samples.

- `batched`: the engine as deployed, `HIGGS_MAX_BATCH` = the largest stream count.
- `sequential`: the service before batching: one request at a time, the others waiting in
  order, each step through transformers' own forward with a static cache (sized to the run, so
  it reads no more KV than it needs) and the same sampling.
- `one_slot`: this engine with `HIGGS_MAX_BATCH=1`: what the fused step alone gives, without
  batching.
- `ops_per_step`: operators one decode step dispatches (views excluded: they launch nothing);
  the `transformers_step` line counts transformers' own forward for one frame plus sampling,
  the step this engine used before its fused forward; `ops_at_full_depth` counts both at the
  real model's 28 layers.

Presets: `tiny` (the demo bundle), `mid` (hidden 1024, 8 layers, 8 heads / 4 KV heads, FFN 2816,
8 x 1026 codebooks: large enough that compute dominates on a CPU), `full-size-random` (the real
checkpoint's shapes, random weights, bf16 on CUDA)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from bench.engine import build, peak_memory_mb  # noqa: E402
from boson_multimodal.batch import BatchDecoder  # noqa: E402
from boson_multimodal.codec import AudioCodec  # noqa: E402
from boson_multimodal.demo import voice_clip  # noqa: E402
from boson_multimodal.prompt import PromptBuilder, Turn, system_turn, voice_turns  # noqa: E402
from boson_multimodal.sampling import CodeIds, DecodeStats, SamplingConfig, SlotState, advance  # noqa: E402
from boson_multimodal.streaming import StreamingVocoder  # noqa: E402

TEXTS = [
    "The quick brown fox jumps over the lazy dog while the sun sets slowly behind the hills.",
    "Please remember to bring the blue folder to the meeting on Thursday morning.",
    "A gentle rain fell over the harbour as the fishing boats came home one by one.",
    "Our new schedule starts next week, so check your inbox for the updated times.",
]


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn) -> int:
    with torch.inference_mode():
        fn()  # once first: constants made on a first call are not part of a step
        with OpCounter() as counter:
            fn()
    return counter.count


def transformers_step_ops(model, prompt) -> int:
    """Operators of one frame through transformers' forward with a static cache, plus sampling."""
    from transformers import StaticCache

    device = next(model.parameters()).device
    cache = StaticCache(config=model.config, max_cache_len=prompt.length + 64)
    audio = prompt.audio_frames.to(device)
    with torch.inference_mode():
        model(input_ids=prompt.input_ids.to(device), audio_input_ids=audio[None],
              audio_input_ids_mask=torch.ones((1, audio.shape[0]), dtype=torch.bool, device=device),
              cache=cache, use_cache=True, logits_to_keep=1)
    ids = CodeIds(model.config)
    state = SlotState.allocate(1, 64, ids, device)
    state.active.fill_(1)
    state.step.fill_(20)
    codes = torch.randint(0, 1024, (1, 1, ids.num_codebooks), device=device)
    position = torch.tensor([[prompt.length]], device=device)

    def step():
        out = model(audio_input_ids=codes, position_ids=position, cache=cache, use_cache=True, logits_to_keep=1)
        advance(out.logits.view(1, ids.num_codebooks, ids.codebook_size).float(), state, ids)

    return count_ops(step)


class TransformersDecoder:
    """Today's one-at-a-time path, for the baseline: prefill, then one frame per step through
    the transformers model's forward and a StaticCache, sampled by the engine's own rules."""

    def __init__(self, model, max_cache_len: int) -> None:
        from boson_multimodal.scheduler import Occupancy

        self.model, self.max_cache_len = model, max_cache_len
        self.device = next(model.parameters()).device
        self.ids = CodeIds(model.config)
        self.occupancy = Occupancy(1)
        self.lock = threading.Lock()

    def decode(self, prompt, sampling, max_frames, sync_every=16, suppress_eos=False, stats=None):
        from transformers import StaticCache

        with self.lock, torch.inference_mode():
            started = time.perf_counter()
            ids, device = self.ids, self.device
            cache = StaticCache(config=self.model.config, max_cache_len=self.max_cache_len)
            state = SlotState.allocate(1, max_frames, ids, device)
            state.start(sampling, prompt.audio_frames, ids, suppress_eos)
            state.active.fill_(1)
            audio = prompt.audio_frames.to(device)
            out = self.model(input_ids=prompt.input_ids.to(device), audio_input_ids=audio[None],
                             audio_input_ids_mask=torch.ones((1, audio.shape[0]), dtype=torch.bool, device=device),
                             cache=cache, use_cache=True, logits_to_keep=1)
            advance(out.logits.view(1, ids.num_codebooks, ids.codebook_size).float(), state, ids)
            if stats is not None:
                stats.prefill_s = time.perf_counter() - started
            position = torch.tensor([[prompt.length]], device=device)
            produced, reported = 1, 0
            while produced < max_frames:
                out = self.model(audio_input_ids=state.codes.view(1, 1, -1), position_ids=position, cache=cache,
                                 use_cache=True, logits_to_keep=1)
                advance(out.logits.view(1, ids.num_codebooks, ids.codebook_size).float(), state, ids)
                position += 1
                produced += 1
                self.occupancy.steps += 1
                due = sync_every(produced) if callable(sync_every) else sync_every
                if produced - reported >= max(1, due) or produced == max_frames:
                    yield state.frames[0, reported:produced].cpu()
                    reported = produced


def full_depth_ops(device: torch.device) -> dict:
    """Operators per decode step at the real model's depth (28 layers, 24 heads / 8 KV heads;
    counts do not depend on the widths, so narrow ones keep this quick): transformers' forward
    plus sampling, against this engine's step on the CUDA path (GEMMs, SDPA) and the CPU one."""
    from transformers import HiggsAudioV2ForConditionalGeneration

    from boson_multimodal.demo import build_text_tokenizer, generation_config

    tokenizer = build_text_tokenizer()
    config = generation_config(tokenizer)
    config.update(dict(num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8, head_dim=8,
                       hidden_size=192, intermediate_size=256))
    with torch.device(device):
        model = HiggsAudioV2ForConditionalGeneration(config).eval()
    prompt = PromptBuilder(tokenizer, config).build([system_turn("A room."), Turn("user", "Hello there.")])
    reference = transformers_step_ops(model, prompt)
    counts = {"mode": "ops_at_full_depth", "layers": 28, "transformers_step": reference}
    for name, cpu_kernels in (("cuda_path", False), ("cpu_path", True)):
        decoder = BatchDecoder(model, max_batch=8, max_cache_len=256, cpu_kernels=cpu_kernels)
        counts[name] = count_ops(lambda: decoder.executor.step_fn(8, 128))
        counts[f"{name}_vs_transformers"] = round(counts[name] / reference, 3)
        decoder.close()
    return counts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def run_streams(decoder: BatchDecoder, codec: AudioCodec, prompts, steps: int, one_at_a_time: bool,
                vocode: bool = True) -> dict:
    n = len(prompts)
    ttfa: list[float] = [0.0] * n
    audio_seconds: list[float] = [0.0] * n
    prefill: list[float] = [0.0] * n
    turn = threading.Lock()
    start = threading.Barrier(n + 1)

    def stream(i: int) -> None:
        start.wait()
        t0 = started[0]
        with turn if one_at_a_time else contextlib.nullcontext():
            vocoder = StreamingVocoder(codec) if vocode else None
            first = None
            frames = 0
            stats = DecodeStats()

            def due(produced: int) -> int:  # as the service: the first audio as soon as it can leave
                return vocoder.frames_for_first_audio() - produced if vocoder and vocoder.emitted == 0 else 16

            for block in decoder.decode(prompts[i], SamplingConfig(seed=i, temperature=0.7), steps + 1,
                                          sync_every=due, suppress_eos=True, stats=stats):
                frames += block.shape[0]
                out = vocoder.push(block) if vocoder else [block]
                if out and first is None:
                    first = time.perf_counter() - t0
            if vocoder:
                vocoder.finish()
            ttfa[i] = first if first is not None else time.perf_counter() - t0
            audio_seconds[i] = max(0, frames - 9) / 25.0
            prefill[i] = stats.prefill_s

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    steps_before = decoder.occupancy.steps
    started = [time.perf_counter()]
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started[0]
    decoder_steps = decoder.occupancy.steps - steps_before
    return {
        "audio_seconds_per_second": round(sum(audio_seconds) / wall, 3),
        "ttfa_p50_ms": round(percentile(ttfa, 50) * 1000, 1),
        "ttfa_p95_ms": round(percentile(ttfa, 95) * 1000, 1),
        "prefill_p50_ms": round(percentile(prefill, 50) * 1000, 1),
        "ms_per_step": round(wall / max(1, decoder_steps) * 1000, 3),
        "decode_steps_per_second": round(decoder_steps / wall, 1),
        "wall_s": round(wall, 3),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["tiny", "mid", "full-size-random"], default="mid")
    parser.add_argument("--streams", default="1,4,8,16")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--voice-seconds", type=float, default=5.0)
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--voice-cache", choices=["on", "off"], default="off",
                        help="on: also run the batched engine with the prompt-prefix cache, its voices cached "
                             "by one earlier request each (lines say voice_cache on/off)")
    parser.add_argument("--json", action="store_true", help="JSON lines only (no header line)")
    return parser.parse_args()


def voice_prompts(model, tokenizer, codec: AudioCodec, n: int, voice_seconds: float) -> list:
    """`n` requests, each with a voice of its own and one of `TEXTS`; the voice turns are the
    prompt's prefix (what the prefix cache keeps)."""
    builder = PromptBuilder(tokenizer, model.config)
    prompts = []
    for i in range(n):
        reference = codec.encode(voice_clip(150.0 + 10 * i, seconds=voice_seconds, seed=i))
        turns = [system_turn("A quiet studio.")]
        turns += voice_turns([("This is the reference clip of the voice to clone.", reference)], False)
        prompts.append(builder.build(turns + [Turn("user", TEXTS[i % len(TEXTS)])], prefix_turns=len(turns)))
    return prompts


@dataclass
class Engines:
    """What a run compares, over one model (see the module docstring)."""

    batched: BatchDecoder
    cached: BatchDecoder | None  # batched, with the prefix cache (--voice-cache on)
    single: BatchDecoder  # one_slot
    today: TransformersDecoder  # sequential

    @classmethod
    def build(cls, model, max_batch: int, cache_len: int, voice_cache: bool) -> "Engines":
        batched = BatchDecoder(model, max_batch=max_batch, max_cache_len=cache_len)
        cached = BatchDecoder(model, max_batch=max_batch, max_cache_len=cache_len, prefix_cache_bytes=1 << 30) \
            if voice_cache else None
        single = BatchDecoder(model, max_batch=1, max_cache_len=cache_len)
        return cls(batched, cached, single, TransformersDecoder(model, cache_len))

    def warm_up(self, codec: AudioCodec, prompts) -> None:
        for decoder in (self.batched, self.single, self.today):
            if isinstance(decoder, BatchDecoder):
                decoder.warm_up()
            run_streams(decoder, codec, prompts[:1], 8, one_at_a_time=False)  # allocator, lazy inits

    def close(self) -> None:
        for decoder in (self.batched, self.single, self.cached):
            if decoder is not None:
                decoder.close()


def run_header(args: argparse.Namespace, device: torch.device, model, prompts, batched: BatchDecoder) -> dict:
    return {
        "preset": args.preset, "device": torch.cuda.get_device_name() if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "parameters": sum(p.numel() for p in model.parameters()), "prompt_tokens": prompts[0].length,
        "steps": args.steps, "torch": torch.__version__,
        "kv_cache_mb": round(batched.executor.kv.nbytes / 2**20, 1),
    }


def stream_rows(n: int, engines: Engines, codec: AudioCodec, prompts, args: argparse.Namespace,
                reference_ops: int, header: dict) -> Iterator[dict]:
    """The lines for `n` streams, each as soon as it is measured: batched (then with the voice
    cache), sequential, one_slot."""
    batched, cached, length = engines.batched, engines.cached, engines.batched.executor.kv_sizes[0]
    bucket = next(b for b in batched.executor.batch_sizes if b >= n)
    ops = count_ops(lambda: batched.executor.step_fn(bucket, length))
    yield {"streams": n, "mode": "batched", "voice_cache": "off",
           **run_streams(batched, codec, prompts[:n], args.steps, False),
           "ops_per_step": ops, "ops_vs_transformers": round(ops / reference_ops, 3), **header}
    if cached is not None:
        run_streams(cached, codec, prompts[:n], 2, False, vocode=False)  # each voice's first request
        yield {"streams": n, "mode": "batched", "voice_cache": "on",
               **run_streams(cached, codec, prompts[:n], args.steps, False),
               "ops_per_step": ops, "ops_vs_transformers": round(ops / reference_ops, 3),
               "prefix_cache": vars(cached.executor.prefix_cache.stats), **header}
    if not args.skip_sequential:
        yield {"streams": n, "mode": "sequential", "voice_cache": "off",
               **run_streams(engines.today, codec, prompts[:n], args.steps, True),
               "ops_per_step": reference_ops, "ops_vs_transformers": 1.0, **header}
        ops = count_ops(lambda: engines.single.executor.step_fn(1, length))
        yield {"streams": n, "mode": "one_slot", "voice_cache": "off",
               **run_streams(engines.single, codec, prompts[:n], args.steps, True),
               "ops_per_step": ops, "ops_vs_transformers": round(ops / reference_ops, 3), **header}


def vocoder_overlap(batched: BatchDecoder, codec: AudioCodec, prompts, steps: int) -> dict:
    """The vocoder runs on the callers' threads: decode steps per second with and without it."""
    without = run_streams(batched, codec, prompts, steps, False, vocode=False)
    with_vocoder = run_streams(batched, codec, prompts, steps, False, vocode=True)
    return {"streams": len(prompts), "mode": "vocoder_overlap",
            "decode_steps_per_second_without_vocoder": without["decode_steps_per_second"],
            "decode_steps_per_second_with_vocoder": with_vocoder["decode_steps_per_second"]}


def main() -> int:
    args = parse_args()
    device = torch.device(args.device)
    counts = [int(s) for s in args.streams.split(",")]

    model, tokenizer, codec_model = build(args.preset, device)
    codec = AudioCodec(codec_model, device)
    prompts = voice_prompts(model, tokenizer, codec, max(counts), args.voice_seconds)
    engines = Engines.build(model, max(counts), max(p.length for p in prompts) + args.steps + 64,
                            args.voice_cache == "on")
    engines.warm_up(codec, prompts)

    header = run_header(args, device, model, prompts, engines.batched)
    if not args.json:
        print("# " + json.dumps(header), flush=True)
    print(json.dumps(full_depth_ops(device)), flush=True)
    reference_ops = transformers_step_ops(model, prompts[0])
    print(json.dumps({"mode": "transformers_step", "ops_per_step": reference_ops}), flush=True)
    for n in counts:
        for row in stream_rows(n, engines, codec, prompts, args, reference_ops, header):
            print(json.dumps(row), flush=True)
    print(json.dumps(vocoder_overlap(engines.batched, codec, prompts[:min(8, max(counts))], args.steps)), flush=True)
    print(json.dumps({"mode": "memory", "peak_memory_mb": round(peak_memory_mb(device), 1),
                      "kv_cache_mb": header["kv_cache_mb"], "max_batch": engines.batched.max_batch}), flush=True)
    engines.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
