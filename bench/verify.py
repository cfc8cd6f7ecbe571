"""What the ASR pass costs: the same requests with verification off, `report`, `on` where every
chunk passes (the cost of holding a chunk until it is transcribed) and `on` where every chunk
fails (the worst case: every chunk generated `--attempts` times), on the demo Higgs bundle and a
random-weight Whisper in a real model's shape (`--asr demo|tiny|turbo`: the demo's, whisper-tiny's,
whisper-large-v3-turbo's), through the engine and the transcriber the service uses.

    .venv/bin/python bench/verify.py --asr tiny
    .venv/bin/python bench/verify.py --asr turbo --device cuda     # on a GPU

Per mode: seconds of ASR per second of audio, wall seconds per second of audio, time to first
audio, attempts per chunk; then 4 requests at once (the transcriber batches their chunks).
A random Whisper never stops by itself: it decodes its token bound (10 per second of audio + 16),
more than a real one does, so its figures are an upper bound for that shape."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXTS = {
    "one chunk": "The quick brown fox jumps over the lazy dog.",
    "three chunks": "The train leaves at half past nine from platform four. The trip takes about two hours. "
                    "Bring a jacket, it gets cold on the coast.",
}


def build(args, tmp: Path):
    from adapters.higgs import HiggsSpeechEngine
    from adapters.voices import VolumeVoiceLibrary
    from adapters.whisper import WhisperTranscriber, error_rate
    from adapters.whisper.demo import write_demo_asr
    from boson_multimodal.demo import write_demo_bundle
    from core.domain.audio import WavEncoder
    from core.service.generate_speech import GenerateSpeech
    from core.service.verification import Asr

    bundle = write_demo_bundle(tmp / "model")
    engine = HiggsSpeechEngine(bundle, device=args.device, max_batch=4, max_cache_len=2048)
    engine.warm_up()
    started = time.perf_counter()
    whisper = WhisperTranscriber(write_demo_asr(tmp / "asr", shape=args.asr), device=args.device, batch_size=8)
    whisper.warm_up()
    load = time.perf_counter() - started
    use_case = GenerateSpeech(engine, VolumeVoiceLibrary(bundle.voices), WavEncoder(), asr=Asr(whisper, error_rate))
    return use_case, whisper, engine, load


MODES = {  # name: (verify, max_wer)
    "off": ("off", None),
    "report": ("report", None),
    "on, every chunk passes": ("on", 1.0),
    "on, every chunk fails": ("on", 0.0),
}


def one(use_case, text: str, mode: str, attempts: int, seed: int, max_new_tokens: int = 200):
    from core.domain.events import SpeechCompleted
    from core.domain.request import Chunking, ChunkMethod, Sampling, SpeechRequest
    from core.domain.verification import Verification

    verify, max_wer = MODES[mode]
    request = SpeechRequest(text, sampling=Sampling(seed=seed, max_new_tokens=max_new_tokens),
                            chunking=Chunking(ChunkMethod.WORD, max_word_num=12),
                            verification=Verification(verify, max_wer, attempts))
    started = time.perf_counter()
    done = list(use_case(request))[-1]
    assert isinstance(done, SpeechCompleted), done
    wall = time.perf_counter() - started
    results = done.metadata.get("verification", [])
    return {"wall": wall, "audio": done.duration_seconds, "asr": done.timings.asr,
            "first_audio": done.timings.first_audio or 0.0,
            "attempts": statistics.mean(r["attempts"] for r in results) if results else 1.0,
            "chunks": len(done.metadata.get("chunk_frames", []))}


def measure(use_case, args) -> list[dict]:
    rows = []
    for label, text in TEXTS.items():
        if label not in args.texts:
            continue
        for mode in MODES:
            runs = [one(use_case, text, mode, args.attempts, seed, args.max_new_tokens) for seed in range(args.repeats)]
            audio = sum(r["audio"] for r in runs)
            row = {"text": label, "mode": mode, "audio_s": round(audio / len(runs), 2),
                   "asr_s_per_audio_s": round(sum(r["asr"] for r in runs) / audio, 3),
                   "wall_s_per_audio_s": round(sum(r["wall"] for r in runs) / audio, 3),
                   "first_audio_s": round(statistics.median(r["first_audio"] for r in runs), 3),
                   "attempts_per_chunk": round(statistics.mean(r["attempts"] for r in runs), 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def concurrent(use_case, whisper, args, n: int = 4) -> dict:
    text = TEXTS[args.texts[-1]]
    out: list[dict] = [{}] * n
    before = whisper.batches

    def go(i):
        out[i] = one(use_case, text, "report", 1, 100 + i, args.max_new_tokens)

    started = time.perf_counter()
    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    audio = sum(r["audio"] for r in out)
    return {"requests": n, "audio_s": round(audio, 2), "wall_s": round(wall, 2),
            "wall_s_per_audio_s": round(wall / audio, 3),
            "whisper_batches": whisper.batches - before, "chunks": sum(r["chunks"] for r in out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr", choices=["demo", "tiny", "turbo"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attempts", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--texts", type=lambda v: [t.strip() for t in v.split(",")], default=list(TEXTS),
                        help="which texts: " + ", ".join(TEXTS))
    parser.add_argument("--max-new-tokens", type=int, default=200, help="decode steps per chunk")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        use_case, whisper, engine, load = build(args, Path(tmp))
        print(json.dumps({"asr": args.asr, "device": args.device, "threads": torch.get_num_threads(),
                          "asr_load_s": round(load, 2), **whisper.describe()}), flush=True)
        rows = measure(use_case, args)
        together = concurrent(use_case, whisper, args)
        print(json.dumps({"concurrent": together}), flush=True)
        engine.close()
    if args.json is not None:
        args.json.write_text(json.dumps({"asr": args.asr, "device": args.device, "rows": rows,
                                         "concurrent": together}, indent=2))
    print("\n| text | mode | audio s | ASR s per audio s | wall s per audio s | first audio s | attempts/chunk |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['text']} | {r['mode']} | {r['audio_s']} | {r['asr_s_per_audio_s']} | {r['wall_s_per_audio_s']} "
              f"| {r['first_audio_s']} | {r['attempts_per_chunk']} |")
    print(f"\n{together['requests']} requests at once (report): {together['chunks']} chunks in "
          f"{together['whisper_batches']} Whisper batches, {together['wall_s_per_audio_s']} wall s per audio s")


if __name__ == "__main__":
    main()
