"""Continuous batching on the demo bundle (float32, CPU): a request's frames depend only on its
own inputs and seed, whatever shares the batch and whenever it joined; slots are reused; one
request's failure or cancel leaves the others untouched; the step is graph-safe."""

import hashlib
import threading

import pytest
import torch

from boson_multimodal.batch import BatchDecoder
from boson_multimodal.fused import DecodeModel, SlotKV
from boson_multimodal.prompt import Turn, conversation
from boson_multimodal.runtime import VoiceClip
from boson_multimodal.sampling import DecodeStats, Prompt, SamplingConfig

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()


def _clip(bundle, name):
    data = (bundle.voices / f"{name}.wav").read_bytes()
    transcript = (bundle.voices / f"{name}.txt").read_text().strip()
    return VoiceClip(name, transcript, data, hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def prompts(demo_runtime, demo_bundle):
    """Prompts of every shape: no voice, one voice, two voices, with and without a scene, short
    and long texts (lengths spread so rows sit at different positions)."""
    voices = [_clip(demo_bundle, "belinda"), _clip(demo_bundle, "en_man")]
    out = []
    for i in range(10):
        chosen = voices[: i % 3]
        references = [(v.transcript, demo_runtime.reference_codes(v)) for v in chosen]
        text = " ".join(WORDS[: 2 + (i * 5) % len(WORDS)])
        turns = conversation("A quiet room." if i % 2 else None, references, text)
        out.append(demo_runtime.prompts.build(turns + [Turn("user", text)]))
    assert len({p.length for p in out}) >= 8
    return out


SETTINGS = [
    SamplingConfig(temperature=0, ras_win_len=0),
    SamplingConfig(seed=1),
    SamplingConfig(seed=2, temperature=1.0, top_k=0, top_p=1.0),
    SamplingConfig(seed=3, temperature=0.7, top_k=5, top_p=0.5, ras_win_len=4, ras_win_max_num_repeat=1),
    SamplingConfig(temperature=0, ras_win_len=7, seed=4),  # greedy, but RAS redraws (seeded)
    SamplingConfig(seed=2**63 - 1, temperature=1.3, top_k=1024, top_p=0.9),
    SamplingConfig(seed=0, temperature=0.3),
    SamplingConfig(seed=77, temperature=0.9, ras_win_len=256, ras_win_max_num_repeat=3),
]


def _decode(decoder, prompt, sampling, frames, logits=None, **kwargs):
    out = torch.cat(list(decoder.decode(prompt, sampling, frames, suppress_eos=True, **kwargs)))
    return out


def _alone(model, prompts, frames, **options):
    decoder = BatchDecoder(model, max_batch=1, **options)
    try:
        return [_decode(decoder, p, s, frames) for p, s in zip(prompts, SETTINGS)]
    finally:
        decoder.close()


def _together(model, prompts, frames, max_batch, stagger, **options):
    """All requests through one decoder; request i starts once request i-1 has produced
    `stagger` blocks (or at once when stagger is 0)."""
    decoder = BatchDecoder(model, max_batch=max_batch, **options)
    results: list = [None] * len(prompts)
    progress = [threading.Event() for _ in prompts]
    peak = [0]

    def run(i):
        if i and stagger:
            progress[i - 1].wait(30)
        blocks = []
        for block in decoder.decode(prompts[i], SETTINGS[i], frames, sync_every=3, suppress_eos=True):
            blocks.append(block)
            peak[0] = max(peak[0], decoder.occupancy.active)
            if len(blocks) >= stagger:
                progress[i].set()
        progress[i].set()
        results[i] = torch.cat(blocks)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    decoder.close()
    return results, peak[0]


@pytest.mark.parametrize("stagger", [0, 1, 4])
def test_a_request_decodes_the_same_alone_and_in_a_batch_of_8(demo_runtime, prompts, stagger):
    model = demo_runtime.bundle.model
    frames = 40
    alone = _alone(model, prompts[:8], frames)
    together, peak = _together(model, prompts[:8], frames, 8, stagger)
    for i, (a, b) in enumerate(zip(alone, together)):
        assert b is not None and b.shape == a.shape == (frames, 8), i
        assert torch.equal(a, b), f"request {i} ({SETTINGS[i]}) changed in the batch"
    if stagger == 0:
        assert peak >= 4  # they really ran side by side


def test_more_requests_than_slots_wait_and_reuse_slots(demo_runtime, prompts):
    model = demo_runtime.bundle.model
    frames = 25
    alone = _alone(model, prompts[:8], frames)
    together, peak = _together(model, prompts[:8], frames, 3, 0)
    assert peak <= 3
    for a, b in zip(alone, together):
        assert torch.equal(a, b)


def test_bucket_switches_inside_a_batch_change_nothing(demo_runtime, prompts):
    """Rows at different positions cross KV buckets of 16 positions at different steps."""
    model = demo_runtime.bundle.model
    frames = 70
    alone = _alone(model, prompts[:8], frames, smallest_bucket=2048, max_cache_len=2048)
    together, _ = _together(model, prompts[:8], frames, 8, 1, smallest_bucket=16, max_cache_len=2048)
    for a, b in zip(alone, together):
        assert torch.equal(a, b)


def test_rows_at_their_own_positions_match_transformers_forward(demo_runtime, prompts):
    """The fused step for 4 rows at 4 positions against the transformers model run on each
    row's sequence alone: logits within 1e-5."""
    model = demo_runtime.bundle.model
    config = model.config
    chosen = prompts[:4]
    kv = SlotKV(config, 4, 1024, "cpu", torch.float32)
    net = DecodeModel(model, 1024, 4)
    codes = torch.randint(0, 1024, (4, 8), generator=torch.Generator().manual_seed(0))
    expected = []
    with torch.inference_mode():
        for slot, prompt in enumerate(chosen):
            cache = kv.static_cache(slot, 1024)
            audio = prompt.audio_frames
            model(input_ids=prompt.input_ids, audio_input_ids=audio[None] if audio.numel() else None,
                  audio_input_ids_mask=torch.ones((1, audio.shape[0]), dtype=torch.bool) if audio.numel() else None,
                  position_ids=torch.arange(prompt.length)[None], cache=cache, use_cache=True, logits_to_keep=1)
            reference = model(audio_input_ids=codes[slot].view(1, 1, 8),
                              position_ids=torch.tensor([[prompt.length]]), cache=cache, use_cache=True,
                              logits_to_keep=1).logits.view(8, -1)
            expected.append(reference)
        position = torch.tensor([p.length for p in chosen])
        got = net.forward(kv, codes, position, 1024)
    for slot in range(4):
        assert (got[slot] - expected[slot]).abs().max().item() < 1e-5


def test_one_request_failing_leaves_the_others_running(demo_runtime, prompts):
    model = demo_runtime.bundle.model
    decoder = BatchDecoder(model, max_batch=4)
    expected = _alone(model, prompts[:2], 30)
    bad = Prompt(torch.tensor([[10**7]]), torch.zeros((0, 8), dtype=torch.long))  # no such token
    results, errors = {}, {}

    def run(name, prompt, sampling):
        try:
            results[name] = _decode(decoder, prompt, sampling, 30, sync_every=2)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            errors[name] = exc

    threads = [threading.Thread(target=run, args=("a", prompts[0], SETTINGS[0])),
               threading.Thread(target=run, args=("bad", bad, SETTINGS[1])),
               threading.Thread(target=run, args=("b", prompts[1], SETTINGS[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    decoder.close()
    assert set(errors) == {"bad"} and isinstance(errors["bad"], IndexError)
    assert torch.equal(results["a"], expected[0]) and torch.equal(results["b"], expected[1])


def test_cancel_and_abandon_free_the_slot_within_a_step(demo_runtime, prompts):
    model = demo_runtime.bundle.model
    decoder = BatchDecoder(model, max_batch=2)
    expected = _alone(model, prompts[:1], 60)[0]
    cancel = threading.Event()
    stats = DecodeStats()
    kept = {}

    def long_runner():
        kept["frames"] = _decode(decoder, prompts[0], SETTINGS[0], 60, sync_every=4)

    runner = threading.Thread(target=long_runner)
    runner.start()
    got = []
    for block in decoder.decode(prompts[1], SETTINGS[1], 500, cancel, sync_every=4, stats=stats,
                                  suppress_eos=True):
        got.append(block)
        if len(got) == 3:
            cancel.set()
    # an abandoned generator (the caller stopped reading) frees its slot too
    for _ in decoder.decode(prompts[2], SETTINGS[2], 500, sync_every=4, suppress_eos=True):
        break
    runner.join(60)
    assert sum(b.shape[0] for b in got) <= 12 + 4 + 1
    assert torch.equal(kept["frames"], expected)
    for _ in range(100):
        if decoder.occupancy.active == 0:
            break
        threading.Event().wait(0.05)
    assert decoder.occupancy.active == 0
    decoder.close()


def test_close_fails_waiting_and_running_requests(demo_runtime, prompts):
    from boson_multimodal.batch import DecoderClosed

    decoder = BatchDecoder(demo_runtime.bundle.model, max_batch=1)
    stream = decoder.decode(prompts[0], SETTINGS[0], 2000, sync_every=1, suppress_eos=True)
    next(stream)
    decoder.close()
    with pytest.raises(DecoderClosed):
        list(stream)
    with pytest.raises(DecoderClosed):
        list(decoder.decode(prompts[0], SETTINGS[0], 10))
    with pytest.raises(DecoderClosed):
        decoder.run(lambda: None)  # nothing waits forever on a closed decoder


def test_the_decode_step_compiles_as_one_graph_without_recompiles(demo_runtime, prompts):
    """What CUDA graph capture needs, checked on the CPU: the step (fused forward, sampling,
    state updates) traced whole (fullgraph: no host sync, no Python branch on a tensor value)
    and reused for every step in a bucket (no recompile: nothing baked in that changes per
    step). It runs the CUDA path (GEMMs and SDPA) and gives the eager path's frames."""
    import torch._dynamo

    model = demo_runtime.bundle.model
    eager = _alone(model, prompts[:2], 40, cpu_kernels=False)
    decoder = BatchDecoder(model, max_batch=2, cpu_kernels=False, smallest_bucket=1024)
    decoder.scheduler.batch_sizes = [2]  # one (batch, KV length) bucket for the whole run
    torch._dynamo.reset()
    compiled = torch.compile(decoder.executor.step_fn, fullgraph=True, backend="eager", dynamic=False)
    decoder.executor.step_fn = compiled
    try:
        with torch._dynamo.config.patch(error_on_recompile=True):
            out = [None, None]

            def run(i):
                out[i] = _decode(decoder, prompts[i], SETTINGS[i], 40, sync_every=40)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
    finally:
        decoder.close()
        torch._dynamo.reset()
    assert decoder.occupancy.steps >= 39
    for a, b in zip(eager, out):
        assert b is not None and torch.equal(a, b)


def test_the_batched_step_runs_in_bfloat16(demo_bundle, prompts):
    """bfloat16 on the CPU: a GPU's dtype through the same code; frames are valid codes, and
    one request's logits stay finite and close to float32's."""
    from boson_multimodal.loader import load_bundle

    step_logits = {}
    for dtype in (torch.float32, torch.bfloat16):
        decoder = BatchDecoder(load_bundle(demo_bundle, device="cpu", dtype=dtype).model, max_batch=4)
        # oneDNN's packed weights only where this CPU packs the dtype (bf16: AVX-512 or
        # AVX-NE-CONVERT; an AVX2 CPU refused them at load), MKL's GEMM elsewhere
        packs = dtype == torch.float32 or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        assert decoder.executor.net.packed is packs
        decoder.executor.logits_hook = (lambda step, value, d=dtype:
                               step_logits.setdefault(d, value.clone()) if step == 1 else None)
        _decode(decoder, prompts[1], SETTINGS[0], 10)
        decoder.executor.logits_hook = None
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(_decode(decoder, prompts[i], SETTINGS[i], 30)))
                   for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        decoder.close()
        assert len(results) == 3
        for frames in results:
            assert frames.shape == (30, 8) and int(frames.min()) >= 0 and int(frames.max()) <= 1025
    f32, bf16 = step_logits[torch.float32], step_logits[torch.bfloat16]
    assert torch.isfinite(bf16).all()
    assert (f32 - bf16).abs().max().item() < 0.1 * f32.abs().max().item()


def test_graph_bookkeeping_on_the_cpu_gives_the_eager_frames(demo_runtime, prompts):
    """The CUDA-graph path's logic with the CPU stand-in (replays run the step eagerly): one
    graph per (batch, KV length) bucket, captured when first needed while other requests are
    mid-stream (their state saved and restored around the capture's warm-up runs), replayed
    for every step; the frames equal the plain eager path's."""
    model = demo_runtime.bundle.model
    frames = 50
    eager = _alone(model, prompts[:6], frames)
    graphed, _ = _together(model, prompts[:6], frames, 8, 1, use_cuda_graphs=True, smallest_bucket=64,
                           max_cache_len=2048)
    for a, b in zip(eager, graphed):
        assert torch.equal(a, b)
    decoder = BatchDecoder(model, max_batch=4, use_cuda_graphs=True, smallest_bucket=256, max_cache_len=1024)
    decoder.warm_up()
    assert set(decoder.executor.graphs) == {(b, s) for b in (1, 2, 4) for s in (256, 512, 1024)}
    stats = DecodeStats()
    out = torch.cat(list(decoder.decode(prompts[0], SETTINGS[0], frames, stats=stats, suppress_eos=True)))
    decoder.close()
    assert torch.equal(out, eager[0]) and stats.graph_replays == frames - 1


@pytest.mark.parametrize("seed", [3, 4, 5, 2016])
def test_every_sampled_code_of_a_long_demo_stream_has_reference_probability(demo_runtime, prompts, seed):
    """The defect's reproduction, through the real decoder: default sampling (repetition-aware
    redraws off, so every free code comes from the filters) over 1500 frames for the seeds that
    drew codes of probability 0 (3, 4, 5) and moved frame 0's forced BOS (2016). Each free code
    has probability above 0 under transformers' warpers applied to that step's logits; each
    code the delay pattern forces is BOS."""
    from tests.unit.reference_sampling import reference_probs

    sampling = SamplingConfig(seed=seed, ras_win_len=0)
    decoder = BatchDecoder(demo_runtime.bundle.model, max_batch=1, max_cache_len=4096)
    logits = {}
    decoder.executor.logits_hook = lambda step, value: logits.setdefault(step, value.clone())
    frames = _decode(decoder, prompts[3], sampling, 1500)
    decoder.close()
    eos = demo_runtime.config.audio_stream_eos_id
    for step, frame in enumerate(frames):
        forced = torch.arange(8) >= step
        assert bool((frame[forced] == demo_runtime.config.audio_stream_bos_id).all()), step
        masked = logits[step].clone()
        masked[:, eos] = float("-inf")  # suppressed: the stream runs to the frame count
        probs = reference_probs(masked, sampling.temperature, sampling.top_k, sampling.top_p)
        free = torch.arange(8)[~forced]
        assert bool((probs[free, frame[free]] > 0).all()), (step, frame)
