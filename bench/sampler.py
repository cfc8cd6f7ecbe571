"""Sampler benchmark: the cost of choosing one frame per slot, alone and inside a whole decode
step, on the tiny and mid presets. Prints one JSON object per line.

    python bench/sampler.py                          # tiny and mid, batch 1 and 8, CPU
    python bench/sampler.py --presets mid --batches 1,8,16 --iterations 400

- `sampler`: `advance` (filters, draw, repetition-aware redraw, end of stream, state update)
  on logits of the preset's shape, the service's default settings, ms per call.
- `step`: one decode step of the batched engine (the fused forward over a KV bucket, then
  `advance`), ms per step, and the share of it the sampler takes.
- `draws`: a digest of the codes drawn over the sampler run (same seeds, same logits): two runs
  of different code that print the same digest drew the same codes.

Each figure is the median of `--repeats` timed runs of `--iterations` calls."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.serving import build, voice_prompts  # noqa: E402
from boson_multimodal.batch import BatchDecoder  # noqa: E402
from boson_multimodal.codec import AudioCodec  # noqa: E402
from boson_multimodal.sampling import CodeIds, SamplingConfig, SlotState, advance  # noqa: E402


def timed(fn, iterations: int, repeats: int) -> float:
    """Median ms per call."""
    for _ in range(max(3, iterations // 10)):
        fn()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        runs.append((time.perf_counter() - started) / iterations * 1000)
    return statistics.median(runs)


def slots(ids: CodeIds, batch: int, device) -> SlotState:
    state = SlotState.allocate(batch, 4096, ids, device)
    for row in range(batch):
        state.row(row).start(SamplingConfig(seed=row), torch.zeros((0, ids.num_codebooks), dtype=torch.long), ids,
                             suppress_eos=True)
    state.active.fill_(1)
    return state


def sampler_row(ids: CodeIds, batch: int, device, iterations: int, repeats: int) -> dict:
    """`advance` on fixed logits, the step counter moving on (so every call draws afresh)."""
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(batch, ids.num_codebooks, ids.codebook_size, generator=generator) * 3).to(device)
    state = slots(ids, batch, device)
    state.step.fill_(ids.num_codebooks + 1)  # past the delay ramp: every codebook is drawn
    digest = hashlib.sha256()

    with torch.inference_mode():
        ms = timed(lambda: advance(logits, state, ids), iterations, repeats)
        state = slots(ids, batch, device)
        state.step.fill_(ids.num_codebooks + 1)
        for _ in range(200):
            advance(logits, state, ids)
            digest.update(state.codes.cpu().numpy().tobytes())
    return {"mode": "sampler", "batch": batch, "ms_per_call": round(ms, 4), "draws": digest.hexdigest()[:16]}


def step_row(decoder: BatchDecoder, batch: int, iterations: int, repeats: int, sampler_ms: float) -> dict:
    executor = decoder.executor
    bucket = next(b for b in executor.batch_sizes if b >= batch)
    length = executor.kv_sizes[0]
    for row in range(decoder.max_batch):  # the service's default settings; positions held (active 0)
        executor.state.row(row).start(SamplingConfig(seed=row), torch.zeros((0, 8), dtype=torch.long), executor.ids,
                                      suppress_eos=True)
    executor.state.step.fill_(executor.ids.num_codebooks + 1)
    with torch.inference_mode():
        ms = timed(lambda: executor.step_fn(bucket, length), iterations, repeats)
    return {"mode": "step", "batch": batch, "kv_bucket": length, "ms_per_step": round(ms, 4),
            "sampler_share": round(sampler_ms / ms, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,mid")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    print("# " + json.dumps({"device": torch.cuda.get_device_name() if device.type == "cuda" else
                             f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
                             "torch": torch.__version__}), flush=True)
    for preset in args.presets.split(","):
        model, tokenizer, codec_model = build(preset, device)
        ids = CodeIds(model.config)
        prompts = voice_prompts(model, tokenizer, AudioCodec(codec_model, device), max(batches), 5.0)
        decoder = BatchDecoder(model, max_batch=max(batches), max_cache_len=max(p.length for p in prompts) + 256)
        decoder.warm_up()
        for batch in batches:
            row = sampler_row(ids, batch, device, args.iterations, args.repeats)
            print(json.dumps({"preset": preset, **row}), flush=True)
            step = step_row(decoder, batch, args.iterations, args.repeats, row["ms_per_call"])
            print(json.dumps({"preset": preset, **step}), flush=True)
        decoder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
