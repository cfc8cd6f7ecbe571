"""Sampling and the end of the stream against reference implementations, on generated cases:
transformers' warpers (what upstream's `generate` applies) for the drawable set, and upstream's
delay/EOS bookkeeping (restated below) for every way a stream can end."""

import math

import numpy as np
import pytest
import torch

from boson_multimodal.sampling import CodeIds, warp
from boson_multimodal.streaming import StreamingVocoder
from tests.unit.reference_sampling import reference_probs, reference_support
from tests.unit.slots import one_slot, sample, sample_and_end

K, SIZE, BOS, EOS = 8, 1026, 1024, 1025
BIG = 1 << 30


class Ids(CodeIds):
    def __init__(self):
        self.num_codebooks, self.codebook_size, self.bos, self.eos = K, SIZE, BOS, EOS


def stratified_counts(kept, n: int) -> torch.Tensor:
    """Each code's share of `n` evenly spaced uniforms through the draw, per codebook [K, C]:
    the probability the draw gives it, counted."""
    u = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    codes = kept.draw(u.expand(kept.order.shape[0], n))
    return torch.stack([torch.bincount(c, minlength=SIZE) for c in codes]).float() / n


def logit_rows(seed: int) -> torch.Tensor:
    """Rows of several shapes: flat, peaked, heavy-tailed, with ties and with masked entries."""
    g = torch.Generator().manual_seed(seed)
    kind = seed % 5
    rows = torch.randn(K, SIZE, generator=g) * (0.5, 3.0, 8.0, 1.0, 2.0)[kind]
    if kind == 3:  # ties: values on a coarse grid
        rows = (rows * 2).round() / 2
    if kind == 4:  # some entries impossible
        rows[torch.rand(K, SIZE, generator=g) < 0.3] = -math.inf
    return rows


SETTINGS = [(t, k, p) for t in (0.3, 0.7, 1.0, 1.7) for k in (0, 1, 7, 50, 1025, 5000) for p in (0.05, 0.5, 0.95, 1.0)]


@pytest.mark.parametrize("seed", range(10))
def test_the_drawable_set_equals_transformers_warpers(seed):
    """Temperature, then top-k, then top-p on the renormalised top-k distribution, with ties
    kept by top-k as transformers keeps them: the same tokens survive, for every setting."""
    logits = logit_rows(seed)
    for temperature, top_k, top_p in SETTINGS:
        kept = warp(logits, torch.tensor(temperature), torch.tensor(top_k), torch.tensor(1 - top_p))
        expected = reference_support(logits, temperature, top_k, top_p)
        probs = reference_probs(logits, temperature, top_k, top_p)
        assert torch.equal(kept.support(), expected), (seed, temperature, top_k, top_p)
        counted = stratified_counts(kept, 1 << 16)
        assert float((counted - probs).abs().max()) <= 2 / (1 << 16) + 1e-6, (seed, temperature, top_k, top_p)


def test_draws_stay_inside_the_reference_support():
    """The defect this guards: top-p over all 1026 scores drew tokens that top-k had removed."""
    for seed in range(6):
        logits = logit_rows(seed)
        support = reference_support(logits, 0.7, 50, 0.95)
        for draw in range(200):
            state = one_slot(Ids(), step=99, temperature=0.7, top_k=50, top_p=0.95, seed=draw)
            frame = sample(logits, state, Ids())
            assert support[torch.arange(K), frame].all()


# -- the end of the stream -----------------------------------------------------------------------


def upstream_stream(rows: list[torch.Tensor]) -> list[torch.Tensor]:
    """Upstream's bookkeeping, restated: `released` codebooks leave BOS one per frame; after the
    first EOS (lowest emitting codebook i, codebooks below it made EOS in that frame),
    `remaining` = K - 1 - i frames follow, each forcing one more codebook to EOS; the stream
    stops once `remaining` reaches 0."""
    frames = [torch.full((K,), BOS)]
    released, remaining = 0, None
    for logits in rows:
        tokens = logits.argmax(dim=-1)
        if released + 1 < K:
            tokens[released + 1:] = BOS
            released += 1
        if remaining is not None:
            tokens[: K - remaining] = EOS
            remaining -= 1
        else:
            hits = (tokens == EOS).nonzero()
            if hits.numel():
                first = int(hits[0, 0])
                tokens[:first] = EOS
                remaining = K - first - 1
        frames.append(tokens)
        if remaining is not None and remaining <= 0:
            break
    return frames


def our_stream(rows: list[torch.Tensor]) -> list[torch.Tensor]:
    state = one_slot(Ids(), greedy=True)
    frames = []
    for logits in [torch.zeros(K, SIZE)] + rows:  # step 0 is the BOS frame
        frames.append(sample_and_end(logits, state, Ids()))
        if int(state.done_at) < BIG:
            assert int(state.done_at) == int(state.step)
            break
        state.step.add_(1)
    return frames


def eos_scenario(seed: int) -> list[torch.Tensor]:
    """Random logits with EOS spikes: in random codebooks (one or several at once), at random
    frames (during the BOS ramp too), sometimes again during the countdown."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for step in range(1, 60):
        logits = torch.randn(K, SIZE, generator=g)
        logits[:, BOS] = -10  # a free codebook never picks BOS here (upstream would keep it)
        if torch.rand((), generator=g) < 0.08 + 0.004 * step:
            chosen = torch.rand(K, generator=g) < (0.15 if seed % 2 else 0.5)
            logits[chosen, EOS] = 100.0
        rows.append(logits)
    return rows


@pytest.mark.parametrize("seed", range(300))
def test_the_stream_ends_where_upstream_ends(seed):
    rows = eos_scenario(seed)
    expected = upstream_stream(rows)
    ours = our_stream(rows)
    assert len(ours) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(ours, expected))


def test_every_first_codebook_is_covered_by_the_generated_scenarios():
    firsts = set()
    for seed in range(300):
        frames = upstream_stream(eos_scenario(seed))
        for frame in frames:
            if (frame == EOS).any():
                firsts.add(int((frame == EOS).sum()) - 1)
                break
    assert firsts >= set(range(K)), firsts


# -- kept time steps -------------------------------------------------------------------------------


class FakeCodec:
    num_codebooks, codebook_size, hop, sample_rate = K, 1024, 4, 24000

    def __init__(self):
        self.decoded = []

    def decode(self, codes):
        self.decoded.append(codes.clone())
        return np.repeat(codes[:, 0].numpy().astype(np.float32), self.hop)


@pytest.mark.parametrize("end", ["eos", "budget"])
@pytest.mark.parametrize("length", [0, 1, 5, 9, 10, 31, 33, 57, 200])
def test_the_vocoder_keeps_upstreams_time_steps_and_never_decodes_bos_or_eos(end, length):
    """Kept: every complete time step but the last, clipped to the codebook (upstream's
    `revert_delay_pattern(...).clip(0, 1023)[:, 1:-1]`), whatever the block boundaries."""
    g = torch.Generator().manual_seed(length)
    codes = torch.randint(0, 1026, (length, K), generator=g)  # BOS/EOS ids sampled inside too
    rows = [torch.full((K,), BOS)]
    for t in range(length + K - 1):  # delayed: frame t+1 holds codebook k's code for time t-k
        row = torch.full((K,), BOS)
        for k in range(K):
            if 0 <= t - k < length:
                row[k] = codes[t - k, k]
            elif t - k >= length:
                row[k] = EOS if end == "eos" else 7
        rows.append(row)
    frames = torch.stack(rows)
    expected_steps = max(0, frames.shape[0] - K - 1)
    codec = FakeCodec()
    vocoder = StreamingVocoder(codec)
    pieces = []
    for start in range(0, frames.shape[0], 7):
        pieces += vocoder.push(frames[start:start + 7])
    pieces += vocoder.finish()
    kept = vocoder.codes()
    assert kept.shape == (expected_steps, K)
    assert torch.equal(kept, codes[:expected_steps].clamp(0, 1023))
    assert all(int(c.max()) < 1024 for c in codec.decoded if c.numel())
    audio = np.concatenate([p.samples for p in pieces]) if pieces else np.zeros(0)
    assert audio.shape == (expected_steps * codec.hop,)


def test_the_first_audio_leaves_exactly_when_its_frames_exist():
    codec = FakeCodec()
    vocoder = StreamingVocoder(codec)
    needed = vocoder.frames_for_first_audio()
    frames = torch.randint(0, 1024, (needed, K))
    frames[0] = BOS
    assert vocoder.push(frames[: needed - 1]) == []
    first = vocoder.push(frames[needed - 1:])
    assert len(first) == 1 and first[0].start == 0 and len(first[0].samples) == vocoder.first_chunk * codec.hop
