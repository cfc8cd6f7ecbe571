"""Speaking while the text arrives: N concurrent WebSocket sessions, each fed by a simulated LLM
(`--tokens-per-s` tokens of about 4 characters), against a `serve http` this script starts on a
demo model (or `--url` of a running one). Per segment: the time from its last character to its
first audio (the server's `text_to_audio_ms`), p50/p95; per session: whether a player that
starts at the first audio ever runs out (starves), and the longest silence it would play.

    .venv/bin/python bench/realtime.py --sessions 1,4 --tokens-per-s 30

One JSON line per session count, then a table."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

REPLY = ("Sure, I can help with that. The train leaves at half past nine from platform four, and the "
         "trip takes about two hours. Bring a jacket: it gets cold on the coast in the evening. Would "
         "you like me to book a seat? I can also find a hotel near the station if you need one.")
SAMPLE_RATE = 24000


def tokens(text: str) -> list[str]:
    """Pieces of about four characters, as an LLM streams them."""
    return [text[i:i + 4] for i in range(0, len(text), 4)]


async def one_session(url: str, rate: float, seed: int, max_new_tokens: int) -> dict:
    latencies: list[float] = []
    first: list[float] = []  # the first segment's: what a listener waits for
    arrivals: list[tuple[float, int]] = []  # (when, samples received so far)
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()
        session = {"voice": "belinda", "seed": seed, "max_new_tokens": max_new_tokens}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await ws.recv()

        async def feed():
            for piece in tokens(REPLY):
                await ws.send(json.dumps({"type": "input_text.append", "text": piece}))
                await asyncio.sleep(1 / rate)
            await ws.send(json.dumps({"type": "input_text.done"}))

        sender = asyncio.create_task(feed())
        samples = 0
        async for message in ws:
            if isinstance(message, bytes):
                samples += len(message) // 2
                arrivals.append((time.monotonic(), samples))
            elif (event := json.loads(message))["type"] == "segment.started":
                latencies.append(event["text_to_audio_ms"])
                if event["index"] == 0:
                    first.append(event["text_to_audio_ms"])
        await sender
    return {"latencies": latencies, "first": first, "arrivals": arrivals, "samples": samples}


def longest_gap(arrivals: list[tuple[float, int]]) -> float:
    """Seconds of the longest stall of a player that starts at the first audio and plays every
    sample once it has it."""
    if not arrivals:
        return 0.0
    start, stalled, worst, before = arrivals[0][0], 0.0, 0.0, 0
    for when, total in arrivals:
        runs_out = start + stalled + before / SAMPLE_RATE  # when the player would have finished what it had
        if when > runs_out:
            worst = max(worst, when - runs_out)
            stalled += when - runs_out
        before = total
    return worst


def percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q / 100))]


async def run(args) -> int:
    server = None
    if args.url is None:
        from tests.ending_bundle import write_ending_bundle
        from tests.http_helpers import HttpServer

        tmp = Path(tempfile.mkdtemp())
        # a segment speaks until its duration bound (a length the runtime derives from its text):
        # as long as real speech of that text would be, about
        bundle = write_ending_bundle(tmp / "bundle", eos_rate=1e-6)
        server = HttpServer(tmp / "srv", MODEL_PATH=str(bundle.root), HIGGS_STORE="none")
        args.url = server.base.replace("http://", "ws://")
    url = args.url.rstrip("/") + "/v1/audio/speech/stream"
    rows = []
    try:
        for count in (int(c) for c in args.sessions.split(",")):
            results = await asyncio.gather(*(one_session(url, args.tokens_per_s, 100 + i, args.max_new_tokens)
                                             for i in range(count)))
            latencies = [v for r in results for v in r["latencies"]]
            firsts = [v for r in results for v in r["first"]]
            gaps = [longest_gap(r["arrivals"]) for r in results]
            rows.append({"sessions": count, "segments": len(latencies),
                         "audio_s": round(sum(r["samples"] for r in results) / SAMPLE_RATE, 2),
                         "first_segment_p50_ms": percentile(firsts, 50),
                         "text_to_audio_p50_ms": percentile(latencies, 50),
                         "text_to_audio_p95_ms": percentile(latencies, 95),
                         "starved_sessions": sum(g > 0.02 for g in gaps), "longest_gap_ms": round(max(gaps) * 1000)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if server is not None:
            server.stop()
    print("\n| sessions | segments | first segment p50 ms | every segment p50 / p95 ms | starved | longest gap ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sessions']} | {r['segments']} | {r['first_segment_p50_ms']} | {r['text_to_audio_p50_ms']} / "
              f"{r['text_to_audio_p95_ms']} | {r['starved_sessions']} | {r['longest_gap_ms']} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1,4")
    parser.add_argument("--tokens-per-s", type=float, default=30.0)
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--url", default=None, help="ws://HOST:PORT of a running serve http (default: start one)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
