"""The decoder's hands (vLLM's executor): it owns the model, the KV cache and the per-slot state
on the device, and runs what the scheduler decided: a prefill into a slot, or a step over the
first B slots reading L positions of the KV cache, eagerly or by replaying that bucket's CUDA
graph (one call site for both). The host reads the device only in `status` and `frames`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from boson_multimodal.fused import DecodeModel, SlotKV, bucket_sizes
from boson_multimodal.graphs import StepGraphs, batch_buckets
from boson_multimodal.prefix_cache import MIN_PREFIX_TOKENS, PrefixCache, prefix_key
from boson_multimodal.sampling import CodeIds, Prompt, SlotState, advance
from boson_multimodal.scheduler import DecodeJob


@dataclass(frozen=True)
class PrefixUse:
    """What a prefill takes from the prefix cache: the prompt's first `tokens` (holding `frames`
    audio frames) already in the slot on a hit; `key`, the prefix's cache key, when it can be kept."""

    tokens: int = 0
    frames: int = 0
    key: str | None = None

    @property
    def hit(self) -> bool:
        return self.tokens > 0


class Executor:
    def __init__(self, model, max_batch: int, max_cache_len: int, smallest_bucket: int | None,
                 use_cuda_graphs: bool | None, cpu_kernels: bool | None, prefix_cache_bytes: int,
                 cuda_graphs: str) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.ids = CodeIds(model.config)
        self.use_cuda_graphs = (self.device.type == "cuda" and cuda_graphs != "off") if use_cuda_graphs is None \
            else use_cuda_graphs
        # KV buckets: by default, with graphs few (doubling from 1024, one graph each), without
        # fine ones (every 128 positions: attention reads less); else doubling from the one given
        if smallest_bucket is None and not self.use_cuda_graphs:
            self.kv_sizes = bucket_sizes(max_cache_len, min(128, max_cache_len), linear=True)
        else:
            self.kv_sizes = bucket_sizes(max_cache_len, min(smallest_bucket or 1024, max_cache_len))
        self.batch_sizes = batch_buckets(max_batch)
        self.kv = SlotKV(model.config, max_batch, max_cache_len, self.device, self.dtype)
        self.net = DecodeModel(model, max_cache_len, max_batch, cpu_kernels)
        self.state = SlotState.allocate(max_batch, max_cache_len, self.ids, self.device)
        self._views = {b: self.state.rows(b) for b in self.batch_sizes}
        self.graphs = StepGraphs(lambda batch, length: self.step_fn(batch, length), self.state.tensors, self.device,
                                 mode=cuda_graphs)
        self.logits_hook: Callable[[int, torch.Tensor], None] | None = None  # eager only: (frame, logits[K, C])
        self.prefix_cache = PrefixCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None

    def prefill(self, job: DecodeJob, slot: int, kv_size: int) -> None:
        """The whole prompt (after any cached prefix) in one forward pass into slot `slot`;
        frame 0 (all BOS) follows from its logits."""
        prompt, row = job.prompt, self.state.row(slot)
        cache = self.kv.static_cache(slot, kv_size)
        prefix = self._reuse_prefix(prompt, slot)
        job.stats.prefix_cache = "off" if prefix.key is None else "hit" if prefix.hit else "miss"
        if prefix.hit:
            for layer in cache.layers:  # the prefix is in place: the prefill goes on after it
                layer.cumulative_length.fill_(prefix.tokens)
        audio = prompt.audio_frames[prefix.frames:].to(self.device)
        job.stats.prefill_tokens = prompt.length - prefix.tokens
        out = self.model(
            input_ids=prompt.input_ids[:, prefix.tokens:].to(self.device),
            audio_input_ids=audio[None] if audio.numel() else None,
            audio_input_ids_mask=(torch.ones((1, audio.shape[0]), dtype=torch.bool, device=self.device)
                                  if audio.numel() else None),
            position_ids=torch.arange(prefix.tokens, prompt.length, device=self.device)[None],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if prefix.key is not None and not prefix.hit and self.prefix_cache is not None:  # kept for the next one
            self.prefix_cache.put(prefix.key,
                                  [both[slot, :, :, :prompt.prefix_length].clone() for both in self.kv.layers])
        logits = out.logits.view(1, self.ids.num_codebooks, self.ids.codebook_size).float()
        # the logits came from the prompt's last token: frame 0 goes at the position after it
        row.start(job.sampling, prompt.audio_frames, self.ids, job.suppress_eos, position=prompt.length - 1)
        row.active.fill_(1)
        if self.logits_hook:
            self.logits_hook(0, logits[0])
        advance(logits, row, self.ids)

    def step(self, jobs: list[DecodeJob], batch: int, kv_size: int) -> bool:
        """One decode step of slots 0..batch-1 reading `kv_size` KV positions; True when a CUDA
        graph replayed it."""
        graph = self.graphs.get_or_capture(batch, kv_size) if self.use_cuda_graphs else None
        if graph is not None:
            graph.replay()
            return True
        logits = self.step_fn(batch, kv_size)
        if self.logits_hook:
            for job in jobs:
                self.logits_hook(job.produced, logits[job.slot])
        return False

    def step_fn(self, batch: int, length: int) -> torch.Tensor:
        """What a CUDA graph captures: tensor ops only, no host sync, nothing that changes per
        step. `advance` samples each row's frame and moves its step and position on."""
        rows = self._views[batch]
        logits = self.net.forward(self.kv, rows.codes, rows.position, length)
        advance(logits, rows, self.ids)
        return logits

    def status(self) -> torch.Tensor:
        """[2, S] on the host, one device read: each slot's last frame (done_at) and whether its
        logits were ever non-finite."""
        return torch.stack((self.state.done_at, self.state.nonfinite.long())).cpu()

    def frames(self, slot: int, start: int, end: int) -> torch.Tensor:
        return self.state.frames[slot, start:end].cpu()

    def free(self, slot: int) -> None:
        """The slot's row stops advancing (it still runs, harmlessly, inside a larger batch)."""
        self.state.active[slot] = 0

    def _reuse_prefix(self, prompt: Prompt, slot: int) -> PrefixUse:
        if self.prefix_cache is None or prompt.prefix_length < MIN_PREFIX_TOKENS:
            return PrefixUse()
        key = prefix_key(prompt.input_ids, prompt.audio_frames, prompt.prefix_length, prompt.prefix_frames)
        entry = self.prefix_cache.get(key)
        if entry is None:
            return PrefixUse(key=key)
        for both, kept in zip(self.kv.layers, entry):
            both[slot, :, :, :prompt.prefix_length].copy_(kept)
        return PrefixUse(prompt.prefix_length, prompt.prefix_frames, key)

