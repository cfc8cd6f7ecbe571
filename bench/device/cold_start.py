"""Cold start, split: a bundle of a preset's shapes (random weights, the published layout) is
written to disk, then a fresh process loads it through the service's own path and times each
part: imports (torch, then transformers and the engine), load (weights from disk onto the device,
the KV plan), warm-up (CUDA graph capture of every bucket and one short generation) and the
first request's first audio.

    python bench/device/cold_start.py --preset full-size-random --json cold.json   # a GPU
    python bench/device/cold_start.py --preset tiny                                # the CPU

The bundle is written just before the timed process starts, so its files are in the page cache:
the load figure is the machine's, not a network volume's (a first read from a volume adds its
size / the volume's read rate)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_bundle(preset: str, root: Path, device: str) -> None:
    """Runs in a process of its own: the timed one starts with the GPU as a worker finds it."""
    sys.path.insert(0, str(ROOT))
    import torch

    from boson_multimodal.demo import write_demo_bundle
    from boson_multimodal.layout import ModelPaths

    if preset == "tiny":
        write_demo_bundle(root)
        return
    from bench.engine import build

    model, tokenizer, codec = build(preset, torch.device(device))
    paths = ModelPaths.under(root)
    model.save_pretrained(paths.generation)
    tokenizer.save_pretrained(paths.generation)
    codec.save_pretrained(paths.tokenizer)


def measure(root: Path, device: str, max_batch: int) -> dict:
    """Runs in the fresh process: every figure from its start."""
    started = time.perf_counter()
    import torch

    torch_s = time.perf_counter() - started
    sys.path.insert(0, str(ROOT))
    from boson_multimodal.layout import ModelPaths
    from boson_multimodal.resample import provide_torchaudio
    from boson_multimodal.runtime import AudioOut, HiggsAudio, SpeechJob

    provide_torchaudio()
    import transformers.models.higgs_audio_v2.modeling_higgs_audio_v2  # noqa: F401  (what load imports)

    imported = time.perf_counter()
    runtime = HiggsAudio.load(ModelPaths.under(root), device=device, max_batch=max_batch)
    if runtime.bundle.device.type == "cuda":
        torch.cuda.synchronize()
    loaded = time.perf_counter()
    runtime.warm_up()
    warm = time.perf_counter()
    first = None
    for event in runtime.speak(SpeechJob("The first request after a cold start.", max_new_tokens=120,
                                          stop_on_silence=False)):
        if isinstance(event, AudioOut) and first is None:
            first = time.perf_counter() - warm
    runtime.close()
    plan = runtime.kv_plan
    return {
        "torch_import_s": round(torch_s, 3),
        "imports_s": round(imported - started, 3),
        "load_s": round(loaded - imported, 3),
        "warm_up_s": round(warm - loaded, 3),
        "graphs_captured": runtime.decoder.executor.graphs.captured if runtime.decoder.executor.use_cuda_graphs else 0,
        "graph_fallbacks": len(runtime.decoder.executor.graphs.fallbacks),
        "to_ready_s": round(warm - started, 3),
        "first_request_first_audio_s": round(first, 3) if first is not None else None,
        "kv_plan": plan.describe(max_batch) if plan is not None else None,
        "max_batch": runtime.decoder.max_batch,
    }


def _has_cuda() -> bool:
    """Whether there is a GPU, without importing torch in this process (nvidia-smi answers)."""
    import shutil

    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["tiny", "mid", "full-size-random"], default="tiny")
    parser.add_argument("--device", default="cuda" if _has_cuda() else "cpu")
    parser.add_argument("--max-batch", type=int, default=8, help="HIGGS_MAX_BATCH (the service's default: 8)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # the process that writes the bundle
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the timed process
    args = parser.parse_args()
    if args.write:
        write_bundle(args.preset, args.write, args.device)
        return 0
    if args.measure:
        print(json.dumps(measure(args.measure, args.device, args.max_batch)))
        return 0
    common = ["--preset", args.preset, "--device", args.device, "--max-batch", str(args.max_batch)]
    with tempfile.TemporaryDirectory(prefix="higgs-cold-") as folder:
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--write", folder, *common], check=True,
                       stdout=subprocess.DEVNULL)
        written = time.perf_counter() - started
        size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
        child = subprocess.run([sys.executable, __file__, "--measure", folder, *common], capture_output=True,
                               text=True)
    sys.stderr.write(child.stderr[-4000:])
    if child.returncode:
        print(f"the timed process failed ({child.returncode})", file=sys.stderr)
        return 1
    result = {"preset": args.preset, "device": args.device, "bundle_bytes": size,
              "bundle_write_s": round(written, 3), **json.loads(child.stdout.strip().splitlines()[-1])}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
