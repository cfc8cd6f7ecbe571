"""The decode path on a real device: `pytest -m cuda` (bench/device/run.sh runs it first on a GPU
machine). HIGGS_TEST_DEVICE names the device (default: cuda when there is one); on the CPU the
same tests drive the graphs' CPU stand-in, which is how CI keeps them from rotting
(`bench/device/run.sh --cpu`, tests/integration/test_device_run.py).

On the device, in float32 and bfloat16, with the demo bundle's shapes:
- every (batch, KV) bucket's graph replays the eager step: the same logits (equal in float32,
  within bf16 rounding in bfloat16) and, in float32, the same sampled codes;
- requests that arrive together decode to the same frames with graphs and without;
- staggered arrivals, slot reuse and KV bucket switches inside a running batch give each request
  the frames it gets alone (float32);
- a prompt-prefix cache hit prefills to the logits of a full prefill;
- the streaming vocoder on the device gives the CPU's audio, sample for sample in length."""

from __future__ import annotations

import hashlib
import os
import threading

import numpy as np
import pytest
import torch

from boson_multimodal.batch import BatchDecoder
from boson_multimodal.codec import AudioCodec
from boson_multimodal.loader import load_bundle
from boson_multimodal.prompt import Turn, conversation
from boson_multimodal.runtime import Finished, HiggsAudio, SpeechJob, VoiceClip
from boson_multimodal.sampling import SamplingConfig
from boson_multimodal.streaming import StreamingVocoder

pytestmark = pytest.mark.cuda

DEVICE = torch.device(os.environ.get("HIGGS_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
SETTINGS = [
    SamplingConfig(temperature=0, ras_win_len=0),
    SamplingConfig(seed=1),
    SamplingConfig(seed=2, temperature=1.0, top_k=0, top_p=1.0),
    SamplingConfig(seed=3, temperature=0.7, top_k=5, top_p=0.5, ras_win_len=4, ras_win_max_num_repeat=1),
    SamplingConfig(seed=4, temperature=1.3, top_k=1024, top_p=0.9),
    SamplingConfig(seed=5, temperature=0.3),
]
# how far a bf16 graph replay may stray from the eager step, relative to the largest logit
# (bf16 keeps 8 bits of mantissa; identical kernels give 0)
BF16_TOLERANCE = 2e-2


def clip(paths, name):
    data = (paths.voices / f"{name}.wav").read_bytes()
    return VoiceClip(name, (paths.voices / f"{name}.txt").read_text().strip(), data, hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def runtime(demo_bundle, request):
    rt = HiggsAudio(load_bundle(demo_bundle, device=DEVICE, dtype=request.param), max_cache_len=2048,
                    max_batch=4, prefix_cache_bytes=64 << 20)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def prompts(runtime, demo_bundle):
    """Six prompts: no voice, one voice, two voices, with and without a scene, of spread lengths."""
    voices = [clip(demo_bundle, "belinda"), clip(demo_bundle, "en_man")]
    out = []
    for i in range(6):
        references = [(v.transcript, runtime.reference_codes(v)) for v in voices[: i % 3]]
        text = " ".join(WORDS[: 2 + (i * 5) % len(WORDS)])
        turns = conversation("A quiet room." if i % 2 else None, references, text)
        out.append(runtime.prompts.build(turns + [Turn("user", text)]))
    return out


def is_float32(runtime) -> bool:
    return runtime.bundle.model.dtype == torch.float32


def decode(decoder, prompt, sampling, frames):
    return torch.cat(list(decoder.decode(prompt, sampling, frames, sync_every=5, suppress_eos=True)))


def in_lockstep(decoder, prompts, frames):
    """Every request admitted at the same step, in order (the scheduler is held in a call
    until all are queued): the batch runs the same steps whatever the timing."""
    entered, gate = threading.Event(), threading.Event()
    holder = threading.Thread(target=decoder.run, args=(lambda: (entered.set(), gate.wait(60)),))
    holder.start()
    assert entered.wait(60)
    results: list = [None] * len(prompts)

    def run(i):
        results[i] = decode(decoder, prompts[i], SETTINGS[i], frames)

    threads = []
    for i in range(len(prompts)):
        threads.append(threading.Thread(target=run, args=(i,)))
        threads[-1].start()
        while decoder.occupancy.waiting < i + 1:
            threading.Event().wait(0.001)
    gate.set()
    for t in [holder, *threads]:
        t.join(120)
    return results


def staggered(decoder, prompts, frames):
    """Request i starts once request i-1 has its first block: joins mid-batch, queues for a
    slot when all are busy, takes a freed one."""
    results: list = [None] * len(prompts)
    started = [threading.Event() for _ in prompts]

    def run(i):
        if i:
            started[i - 1].wait(60)
        blocks = []
        for block in decoder.decode(prompts[i], SETTINGS[i], frames, sync_every=3, suppress_eos=True):
            blocks.append(block)
            started[i].set()
        started[i].set()
        results[i] = torch.cat(blocks)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_every_bucket_graph_replays_the_eager_step(runtime, prompts):
    model = runtime.bundle.model
    decoder = BatchDecoder(model, max_batch=4, max_cache_len=2048, smallest_bucket=512, use_cuda_graphs=True)
    decoder.warm_up()
    assert set(decoder.executor.graphs) == {(b, s) for b in (1, 2, 4) for s in (512, 1024, 2048)}
    assert decoder.executor.graphs.fallbacks == []
    short = sorted(prompts, key=lambda p: p.length)[:4]
    assert short[-1].length + 40 < 512
    in_lockstep(decoder, short, 40)  # the KV cache and the rows hold a real request's state

    def compare(batch, length):
        state = [t.clone() for t in [*decoder.executor.state.tensors(), *decoder.executor.kv.layers]]
        eager = decoder.executor.step_fn(batch, length).float().clone()
        after_eager = [t.clone() for t in decoder.executor.state.tensors()]
        for t, s in zip([*decoder.executor.state.tensors(), *decoder.executor.kv.layers], state):
            t.copy_(s)
        graph = decoder.executor.graphs[(batch, length)]
        graph.replay()
        replayed = graph.output.float().clone()
        same_codes = all(torch.equal(a, b) for a, b in zip(after_eager, decoder.executor.state.tensors()))
        for t, s in zip([*decoder.executor.state.tensors(), *decoder.executor.kv.layers], state):
            t.copy_(s)
        return eager, replayed, same_codes

    for batch, length in sorted(decoder.executor.graphs):
        eager, replayed, same_codes = decoder.run(lambda: compare(batch, length))
        assert torch.isfinite(eager).all() and eager.shape == replayed.shape
        error = (eager - replayed).abs().max().item() / eager.abs().max().item()
        if is_float32(runtime):
            assert error <= 1e-5 and same_codes, (batch, length, error)
        else:
            assert error <= BF16_TOLERANCE, (batch, length, error)
    decoder.close()


def test_requests_together_decode_the_same_frames_with_graphs_and_without(runtime, prompts):
    model = runtime.bundle.model
    results = {}
    for graphs in (True, False):
        decoder = BatchDecoder(model, max_batch=4, max_cache_len=2048, smallest_bucket=128, use_cuda_graphs=graphs)
        decoder.warm_up()
        results[graphs] = in_lockstep(decoder, prompts[:4], 120)  # past a 128-position bucket edge
        decoder.close()
    for graphed, eager in zip(results[True], results[False]):
        assert graphed.shape == eager.shape == (120, 8)
        assert torch.equal(graphed, eager)


def test_staggered_arrivals_and_bucket_switches_give_each_request_its_frames_alone(runtime, prompts):
    model = runtime.bundle.model
    alone = BatchDecoder(model, max_batch=1, max_cache_len=2048, smallest_bucket=64, use_cuda_graphs=False)
    expected = [decode(alone, p, s, 90) for p, s in zip(prompts, SETTINGS)]
    alone.close()
    decoder = BatchDecoder(model, max_batch=4, max_cache_len=2048, smallest_bucket=64, use_cuda_graphs=True)
    got = staggered(decoder, prompts, 90)  # 6 requests, 4 slots: two wait, then reuse slots
    switches = {b for b in decoder.executor.graphs}
    decoder.close()
    assert len({length for _, length in switches}) >= 3  # KV buckets changed while the batch ran
    for a, b in zip(got, expected):
        assert a.shape == b.shape == (90, 8) and 0 <= int(a.min()) and int(a.max()) <= 1025
        if is_float32(runtime):  # in bf16, batch and alone round differently and sampling diverges
            assert torch.equal(a, b)


def test_a_prefix_cache_hit_prefills_to_the_logits_of_a_full_prefill(runtime, demo_bundle):
    voice = clip(demo_bundle, "belinda")
    request = SpeechJob("Hello there, my friend.", [voice], sampling=SamplingConfig(temperature=0, ras_win_len=0),
                        max_new_tokens=60, stop_on_silence=False)
    first_logits = []
    runtime.decoder.executor.logits_hook = \
        lambda step, logits: first_logits.append(logits.float().cpu()) if step == 0 else None
    try:
        runs = [[e for e in runtime.speak(request) if isinstance(e, Finished)][0] for _ in range(2)]
    finally:
        runtime.decoder.executor.logits_hook = None
    assert runs[0].prefix_cache == ["miss"] and runs[1].prefix_cache == ["hit"]
    assert runs[1].prefill_tokens < runs[0].prefill_tokens
    miss, hit = first_logits
    error = (miss - hit).abs().max().item() / miss.abs().max().item()
    assert error <= (1e-4 if is_float32(runtime) else BF16_TOLERANCE)
    if is_float32(runtime):
        assert all(torch.equal(a, b) for a, b in zip(runs[0].chunk_codes, runs[1].chunk_codes))


def test_the_streaming_vocoder_on_the_device_gives_the_cpu_audio(runtime, prompts, demo_bundle):
    decoder = BatchDecoder(runtime.bundle.model, max_batch=1, max_cache_len=2048)
    frames = decode(decoder, prompts[1], SETTINGS[1], 150)
    decoder.close()
    cpu_codec = AudioCodec(load_bundle(demo_bundle, device="cpu").audio_tokenizer, "cpu")
    audio = {}
    for name, codec in (("device", runtime.codec), ("cpu", cpu_codec)):
        vocoder = StreamingVocoder(codec)
        pieces = []
        for start in range(0, frames.shape[0], 7):
            pieces += vocoder.push(frames[start:start + 7])
        pieces += vocoder.finish()
        audio[name] = np.concatenate([p.samples for p in pieces]).astype(np.float64)
        hop = codec.sample_rate // 25
        assert len(audio[name]) == vocoder.codes().shape[0] * hop > 0
    assert np.isfinite(audio["device"]).all()
    difference = np.abs(audio["device"] - audio["cpu"]).max() / max(1e-9, np.abs(audio["cpu"]).max())
    assert difference < 1e-3, difference
