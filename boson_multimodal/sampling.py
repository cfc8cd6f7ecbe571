"""Sampling one audio frame per slot, on the device, for a batch of slots (see `batch.py` for the
decode loop that drives it).

A frame is 8 codes, one per codebook, in the delay pattern: frame s carries codebook k's code for
time s-1-k. Frame 0 is all stream-BOS; at step s the codebooks k >= s are still forced to BOS.
The end follows the reference implementation step for step: at the first frame s in which some
codebook emits stream-EOS, let i be the lowest such codebook; codebooks below i become EOS in
that same frame, and at frame s+m codebooks below i+m are forced to EOS. The stream's last frame
is s+K-1-i (its last codebook is never forced). `eos_base` = s - i keeps that rule in one number:
at step t the codebooks k < t - eos_base are EOS, and t - eos_base = K-1 is the last frame.

Every setting and every piece of state is a tensor with one row per slot, so one step (and one
captured CUDA graph) serves requests with different settings side by side. Random draws come
from a counter-based stream, a hash of (the request's seed, the step, the codebook, the code),
so a request's audio depends only on its own inputs and seed, never on its neighbours in the
batch or the order in which they arrived."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, fields

import torch

BIG = 1 << 30
RAS_WINDOW_MAX = 256


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.3  # 0 means greedy (argmax), for parity tests
    top_k: int = 50
    top_p: float = 0.95
    ras_win_len: int = 7  # 0 turns repetition-aware sampling off
    ras_win_max_num_repeat: int = 2
    seed: int | None = None

    def __post_init__(self) -> None:
        """Values that would make the filters meaningless (a NaN temperature turns every score
        into NaN) are refused here; the service's request validation is narrower still."""
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be finite and at least 0, not {self.temperature!r}")
        if not (math.isfinite(self.top_p) and 0 <= self.top_p <= 1):
            raise ValueError(f"top_p must be in [0, 1] (0 or 1: off), not {self.top_p!r}")
        if self.top_k < 0 or self.ras_win_len < 0 or self.ras_win_max_num_repeat < 0:
            raise ValueError("top_k, ras_win_len and ras_win_max_num_repeat must not be negative")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), not {self.seed!r}")


@dataclass
class Prompt:
    input_ids: torch.Tensor  # [1, L] text tokens with audio placeholders
    audio_frames: torch.Tensor  # [F, 8] delayed frames that fill the placeholders, in order
    # the part every request with the same voices and scene shares (system and voice turns):
    # its tokens and the audio frames among them; a decoder may reuse its KV (prefix cache)
    prefix_length: int = 0
    prefix_frames: int = 0

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class DecodeStats:
    prefill_s: float = 0.0
    decode_s: float = 0.0
    steps: int = 0
    bucket_switches: int = 0
    graph_replays: int = 0
    prefix_cache: str = "off"  # "hit", "miss" or "off" (no cache, or a prefix too short to keep)
    prefill_tokens: int = 0  # tokens the prefill computed (the suffix alone on a prefix-cache hit)
    queue_wait_s: float = 0.0  # from submission until a slot was free and the prefill began
    end_token: bool = False  # the stream ended (else a bound, a cancel or max_frames stopped it)


class NumericalError(RuntimeError):
    """The model produced NaN or infinite logits."""


class CodeIds:
    def __init__(self, config) -> None:
        self.num_codebooks = int(config.num_codebooks)
        self.codebook_size = int(config.codebook_size)  # codes + BOS + EOS
        self.bos = int(config.audio_stream_bos_id)
        self.eos = int(config.audio_stream_eos_id)


@dataclass
class SlotState:
    """Per-slot decode state and settings, one row per slot. `rows(n)` and `row(i)` are views,
    so the functions below update the slots they are given in place."""

    codes: torch.Tensor  # [S, K] the newest frame: the next step's input
    position: torch.Tensor  # [S] the KV position that frame is written at (moved on by `advance`, with step)
    step: torch.Tensor  # [S] frames sampled so far (frame 0 is the all-BOS frame)
    eos_base: torch.Tensor  # [S] see the module docstring; BIG until the first EOS
    done_at: torch.Tensor  # [S] the step of the last frame; BIG until known
    nonfinite: torch.Tensor  # [S] bool: the model produced NaN or infinite logits
    window: torch.Tensor  # [S, W, K] recent frames, newest first (repetition-aware sampling)
    frames: torch.Tensor  # [S, F, K] every frame of the slot's current request
    temperature: torch.Tensor  # [S]
    top_k: torch.Tensor  # [S] 0 = off
    top_p_floor: torch.Tensor  # [S] 1 - top_p (computed in double, as transformers does); 0 = off
    ras_len: torch.Tensor  # [S] 0 = off
    ras_max: torch.Tensor  # [S]
    greedy: torch.Tensor  # [S] bool: argmax instead of a draw (parity tests)
    suppress_eos: torch.Tensor  # [S] bool: never end (benchmarks run a fixed number of steps)
    key: torch.Tensor  # [S] the request's random stream (from its seed), 32 bits
    active: torch.Tensor  # [S] 1 when the slot holds a running request (its step and position advance), else 0

    @classmethod
    def allocate(cls, slots: int, max_frames: int, ids: CodeIds, device) -> "SlotState":
        n = ids.num_codebooks

        def longs(*shape, fill=0):
            return torch.full(shape, fill, dtype=torch.long, device=device)

        def flags(*shape):
            return torch.zeros(shape, dtype=torch.bool, device=device)

        return cls(
            codes=longs(slots, n, fill=ids.bos), position=longs(slots), step=longs(slots),
            eos_base=longs(slots, fill=BIG), done_at=longs(slots, fill=BIG), nonfinite=flags(slots),
            window=longs(slots, RAS_WINDOW_MAX, n, fill=ids.bos), frames=longs(slots, max_frames, n, fill=ids.bos),
            temperature=torch.ones(slots, device=device), top_k=longs(slots),
            top_p_floor=torch.zeros(slots, device=device), ras_len=longs(slots), ras_max=longs(slots, fill=1),
            greedy=flags(slots), suppress_eos=flags(slots), key=longs(slots), active=longs(slots),
        )

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, f.name) for f in fields(self)]

    def rows(self, n: int) -> "SlotState":
        return SlotState(*(t[:n] for t in self.tensors()))

    def row(self, slot: int) -> "SlotState":
        return SlotState(*(t[slot:slot + 1] for t in self.tensors()))

    def start(self, sampling: SamplingConfig, prompt_frames: torch.Tensor, ids: CodeIds,
              suppress_eos: bool = False, position: int = 0) -> None:
        """Reset this (one-row) view for a new request whose next logits come from KV position
        `position` (the prompt's last token): `advance` writes the frame they give at the next."""
        self.greedy.fill_(sampling.temperature <= 0)
        self.temperature.fill_(max(sampling.temperature, 1e-5))
        self.top_k.fill_(sampling.top_k if sampling.top_k else 0)
        self.top_p_floor.fill_(1 - (sampling.top_p if sampling.top_p else 1.0))
        self.ras_len.fill_(min(sampling.ras_win_len, RAS_WINDOW_MAX))
        self.ras_max.fill_(max(1, sampling.ras_win_max_num_repeat))
        self.suppress_eos.fill_(suppress_eos)
        seed = sampling.seed if sampling.seed is not None else secrets.randbits(63)
        self.key.fill_(stream_key(seed))
        self.codes.fill_(ids.bos)
        self.position.fill_(position)
        self.step.zero_()
        self.eos_base.fill_(BIG)
        self.done_at.fill_(BIG)
        self.nonfinite.zero_()
        self.window.fill_(ids.bos)
        tail = prompt_frames[-RAS_WINDOW_MAX:].flip(0)  # newest first, as the window keeps them
        if tail.numel():
            self.window[0, : tail.shape[0]].copy_(tail.to(self.window.device))


_ARANGES: dict[tuple[int, str], torch.Tensor] = {}


def arange_once(n: int, device) -> torch.Tensor:
    """arange(n), made once per size and device: a constant of the step, not an operator in it
    (the first call happens in a warm-up run, before any graph is captured)."""
    key = (n, str(device))
    if key not in _ARANGES:
        _ARANGES[key] = torch.arange(n, device=device)
    return _ARANGES[key]


def advance(logits: torch.Tensor, state: SlotState, ids: CodeIds) -> None:
    """Sample each row's next frame from `logits` [B, K, C] and update the rows' state, all on
    the device (no host sync, no branch on a tensor's value: safe inside a captured graph)."""
    # a sum is finite only when every term is (logits are far from float32's overflow)
    state.nonfinite |= ~torch.isfinite(logits.sum(dim=(1, 2)))
    frame = end_of_stream(sample_frame(logits, state, ids), state, ids)
    state.window.copy_(torch.roll(state.window, 1, 1))
    state.window[:, 0].copy_(frame)
    state.codes.copy_(frame)
    rows = arange_once(frame.shape[0], frame.device)
    state.frames[rows, state.step.clamp(max=state.frames.shape[1] - 1)] = frame
    state.step.add_(state.active)  # the one place a row moves on: its step, and the KV position
    state.position.add_(state.active)  # its new frame is written at in the next step


def sample_frame(logits: torch.Tensor, state: SlotState, ids: CodeIds) -> torch.Tensor:
    """The next frame [B, K] of each row: drawn from the filtered distribution (or taken
    greedily); a code repeated too often in the recent window is redrawn from the unfiltered
    distribution; then the delay pattern and the end of stream set BOS or EOS where they apply.
    Forced codes are put in after every draw, never drawn: no random value can move them. A row
    whose scores overflow (logits / temperature) is marked non-finite, as for NaN logits."""
    batch, n, size = logits.shape
    logits = logits.float()
    codebook = arange_once(n, logits.device)[None]
    vocab = arange_once(size, logits.device)
    step = state.step[:, None]
    bos_forced = codebook >= step
    forced = bos_forced | (codebook < (step - state.eos_base[:, None]))
    logits = logits.masked_fill(state.suppress_eos[:, None, None] & (vocab == ids.eos), -math.inf)

    first, second = uniforms(state.key, state.step, n).view(batch, 2, n).unbind(1)
    column = (batch, 1, 1)
    kept = warp(logits, state.temperature.view(column), state.top_k.view(column), state.top_p_floor.view(column))
    state.nonfinite |= ~torch.isfinite(kept.cumulative[..., -1]).all(dim=1)
    choice = torch.where(state.greedy[:, None], logits.argmax(dim=-1), kept.draw(first[..., None])[..., 0])

    window = state.window
    recent = arange_once(window.shape[1], logits.device)[None, :, None] < state.ras_len[:, None, None]
    counted = recent & (window < ids.bos)
    repeats = ((window == choice[:, None]) & counted).sum(dim=1)
    redraw = (repeats >= state.ras_max[:, None]) & (state.ras_len[:, None] > 0)
    unfiltered = Distribution(vocab.expand_as(logits), logits.softmax(dim=-1).cumsum(dim=-1), torch.zeros_like(first),
                              size)
    choice = torch.where(redraw, unfiltered.draw(second[..., None])[..., 0], choice)
    return torch.where(forced, torch.where(bos_forced, ids.bos, ids.eos), choice)


@dataclass
class Distribution:
    """Codes to draw from, as an inverse CDF: `cumulative` [..., N] is non-decreasing over the
    codes in `order` (N of the codebook's `size`, the rest having no mass); the first `floor`
    of the mass is excluded (top-p's dropped tail)."""

    order: torch.Tensor  # [..., N] the code at each position
    cumulative: torch.Tensor  # [..., N] probability mass up to and including each position
    floor: torch.Tensor  # [...] mass below the first position that may be drawn
    size: int  # codes in the codebook
    kept: torch.Tensor | None = None  # [..., N] bool: what the filters keep (positions, before any mass)

    def draw(self, uniform: torch.Tensor) -> torch.Tensor:
        """Codes [..., M] for uniforms [..., M] (M draws per row): the code where
        `floor + u x (total - floor)` falls, i.e. the first position whose cumulative mass
        exceeds it. A position of probability 0 adds no mass, so it is never the first to exceed
        anything; the target is kept below the total (u = 1, rounding), so the position found
        always has mass. Any value of u is safe; the stream gives u in (0, 1)."""
        total = self.cumulative[..., -1:]
        floor = self.floor[..., None]
        target = floor + uniform.float().clamp(0.0, 1.0) * (total - floor)
        target = torch.minimum(target, torch.nextafter(total, torch.zeros_like(total)))
        position = torch.searchsorted(self.cumulative, target, right=True)
        return self.order.gather(-1, position.clamp(max=self.order.shape[-1] - 1))

    def support(self) -> torch.Tensor:
        """[..., size] bool in code order: the codes the filters keep. A kept code far below the
        largest can still have no mass in float32 (then no draw returns it, as in a reference
        sampler's float32 probabilities)."""
        out = torch.zeros((*self.order.shape[:-1], self.size), dtype=torch.bool, device=self.order.device)
        kept = self.kept if self.kept is not None else self.cumulative > self.floor[..., None]
        return out.scatter_(-1, self.order, kept)


CANDIDATES = (64, 128, 256, 512)  # how many of the largest scores top-p may look at, by top-k
TIE_ROOM = 16  # candidates beyond the largest top-k, for scores tied with the k-th


def warp(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
         top_p_floor: torch.Tensor) -> Distribution:
    """What to sample from, in the reference implementation's order (transformers' warpers):
    temperature; top-k (every score below the k-th largest is dropped, ties kept); top-p on the
    renormalised result (in ascending order, the scores whose cumulative probability is at most
    1 - top_p are dropped, the largest always kept). Settings are tensors (broadcast against
    the rows) so that one captured step serves every request. Tied scores are ordered by code.

    Top-p only ever sees top-k's survivors. Where the rows' top-k is small and the step runs
    eagerly on the CPU, only the largest few scores are sorted (`topk`), when they hold every
    survivor (checked); otherwise every score is (one stable sort; the ones top-k drops sit
    first). Both give the same numbers: the mass is a running sum that starts with the largest
    score subtracted and zeros for dropped scores, so the survivors' sums do not depend on how
    many dropped ones precede them."""
    scores = logits / temperature
    candidates = _candidates(scores, top_k)
    if candidates is not None:
        ascending, order = _largest(scores, candidates)
        if bool((_survivors(scores, ascending, top_k) <= candidates).all()):
            return _filtered(ascending, order, top_k, top_p_floor, scores.shape[-1])
    ascending, order = scores.sort(dim=-1, stable=True)
    return _filtered(ascending, order, top_k, top_p_floor, scores.shape[-1])


def _candidates(scores: torch.Tensor, top_k: torch.Tensor) -> int | None:
    """How many of the largest scores to sort, or None for all of them. Needs the rows' top-k
    on the host: only on the CPU and outside a compiled or captured step."""
    if scores.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    if int(top_k.min()) <= 0:  # a row without top-k needs every score
        return None
    largest = int(top_k.max())
    return next((c for c in CANDIDATES if largest + TIE_ROOM <= c < scores.shape[-1]), None)


def _largest(scores: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `count` largest scores in ascending order, ties by code, and their codes."""
    values, codes = scores.topk(count, dim=-1, sorted=False)
    codes, by_code = codes.sort(dim=-1)
    ascending, by_value = values.gather(-1, by_code).sort(dim=-1, stable=True)
    return ascending, codes.gather(-1, by_value)


def _survivors(scores: torch.Tensor, ascending: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """How many scores top-k keeps in each row (ties with the k-th included)."""
    n = ascending.shape[-1]
    kth = ascending.gather(-1, (n - top_k.clamp(1, n)).expand(*ascending.shape[:-1], 1))
    return (scores >= kth).sum(dim=-1)


def _filtered(ascending: torch.Tensor, order: torch.Tensor, top_k: torch.Tensor, top_p_floor: torch.Tensor,
              size: int) -> Distribution:
    n = ascending.shape[-1]
    kth = ascending.gather(-1, (n - top_k.clamp(1, n)).expand(*ascending.shape[:-1], 1))
    ascending = ascending.masked_fill((top_k > 0) & (ascending < kth), -math.inf)
    mass = (ascending - ascending[..., -1:]).exp().cumsum(dim=-1)  # dropped scores add exact zeros
    cumulative = mass / mass[..., -1:]
    drop = (cumulative <= top_p_floor) & (top_p_floor > 0)
    drop[..., -1] = False
    floor = torch.where(drop, cumulative, 0.0).amax(dim=-1)
    return Distribution(order, cumulative, floor, size, kept=~drop & (ascending > -math.inf))


def end_of_stream(frame: torch.Tensor, state: SlotState, ids: CodeIds) -> torch.Tensor:
    """Applies the end-of-stream rule (module docstring) to sampled frames [B, K] and updates
    the rows' `eos_base` and `done_at` in place."""
    codebook = arange_once(frame.shape[1], frame.device)[None]
    step, eos_base, done_at = state.step, state.eos_base, state.done_at
    is_eos = frame == ids.eos
    first = (eos_base == BIG) & is_eos.any(dim=1)
    lowest = is_eos.int().argmax(dim=1)  # the first EOS codebook (argmax returns the first maximum)
    frame = torch.where(first[:, None] & (codebook < lowest[:, None]), ids.eos, frame)
    eos_base.copy_(torch.where(first, step - lowest, eos_base))
    last = (step - eos_base) >= ids.num_codebooks - 1
    done_at.copy_(torch.where((done_at == BIG) & last, step, done_at))
    return frame


# -- the counter-based random stream ------------------------------------------------------------

_M32 = 0xFFFFFFFF


def _mix32(x):
    """A 32-bit integer hash (xorshift-multiply rounds). Works on Python ints and on int64
    tensors holding values below 2**32: each product stays below 2**63, so nothing overflows."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x68E31DA5) & _M32
    return x ^ (x >> 16)


def stream_key(seed: int) -> int:
    """A request's 32-bit stream key from its seed (any non-negative integer below 2**64)."""
    return _mix32((seed & _M32) ^ _mix32(((seed >> 32) & _M32) ^ 0x5BD1E995))


UNIFORM_BITS = 23  # (k + 0.5) / 2**23 is exact in float32 for every k < 2**23; at 24 bits it is not


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """32 random bits -> a float32 uniform strictly inside (0, 1): the top 23 bits k give
    (k + 0.5) / 2**23, from 2**-24 to 1 - 2**-24, every value exact (with 24 bits, the largest
    would be 1 - 2**-25, which float32 rounds to 1.0)."""
    return ((bits >> (32 - UNIFORM_BITS)).to(torch.float32) + 0.5) * (1.0 / (1 << UNIFORM_BITS))


def uniforms(key: torch.Tensor, step: torch.Tensor, count: int) -> torch.Tensor:
    """`2 * count` uniform draws in (0, 1) per row ([B, 2 * count], float32), a function of the
    row's key and step only. Each row's (key, step) picks a 32-bit base (the step spread by the
    golden-ratio constant); counter i then gives mix32(base ^ i), distinct for distinct i."""
    base = _mix32(key ^ ((step * 0x9E3779B1) & _M32))  # step < 2**31: the product fits
    counter = arange_once(2 * count, key.device)
    return uniform_from_bits(_mix32(base[:, None] ^ counter[None]))
