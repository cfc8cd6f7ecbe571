"""How many KV-cache slots a GPU holds, planned from its memory after the weights (as vLLM's
`gpu_memory_utilization` does): the budget is the card's memory times a fraction, less what is
in use once the weights are loaded, less a reserve for activations (a prefill of the longest
prompt), the CUDA-graph pool and the libraries' workspaces, less the prefix cache's budget. `max_batch` slots of
`max_cache_len` positions when they fit; fewer slots when they do not; a refusal, saying what
to change, when not even one does."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30
# activations of a prefill of 8192 positions (hidden and feed-forward widths in bf16: under
# 1 GiB), the CUDA-graph pool of the decode steps, cuBLAS/cuDNN workspaces, fragmentation
RESERVE_BYTES = 2 * GIB
DEFAULT_FRACTION = 0.9


class NotEnoughMemory(RuntimeError):
    """Not even one KV-cache slot fits the memory left after the weights."""


def kv_bytes_per_position(config, itemsize: int) -> int:
    """Bytes one position of one slot takes: keys and values of every layer."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * itemsize


@dataclass(frozen=True)
class KvPlan:
    slots: int
    positions: int
    bytes_per_position: int
    total_bytes: int  # the card's memory
    used_bytes: int  # in use once the weights are loaded (this process and any other)
    fraction: float
    reserve_bytes: int = RESERVE_BYTES

    @property
    def budget_bytes(self) -> int:
        return int(self.total_bytes * self.fraction) - self.used_bytes - self.reserve_bytes

    @property
    def kv_bytes(self) -> int:
        return self.slots * self.positions * self.bytes_per_position

    def describe(self, max_batch: int) -> str:
        why = "HIGGS_MAX_BATCH caps it" if self.slots == max_batch else "memory caps it"
        return (f"KV cache: {self.slots} slots x {self.positions} positions x {self.bytes_per_position // 1024} KiB "
                f"= {self.kv_bytes / GIB:.1f} GiB ({why}); budget {self.budget_bytes / GIB:.1f} GiB = "
                f"{self.total_bytes / GIB:.1f} GiB x {self.fraction:g} (HIGGS_GPU_MEMORY_FRACTION) less "
                f"{self.used_bytes / GIB:.1f} GiB in use after the weights and {self.reserve_bytes / GIB:.1f} GiB "
                "kept for activations, CUDA graphs and the prefix cache")


def plan_kv(total_bytes: int, used_bytes: int, bytes_per_position: int, max_batch: int, max_cache_len: int,
            fraction: float = DEFAULT_FRACTION, reserve_bytes: int = RESERVE_BYTES) -> KvPlan:
    if not 0 < fraction <= 1:
        raise ValueError(f"the GPU memory fraction must be in (0, 1], not {fraction}")
    plan = KvPlan(0, max_cache_len, bytes_per_position, total_bytes, used_bytes, fraction, reserve_bytes)
    per_slot = bytes_per_position * max_cache_len
    slots = min(max_batch, max(0, plan.budget_bytes) // per_slot)
    if slots < 1:
        raise NotEnoughMemory(
            f"not even one KV-cache slot fits: one slot of {max_cache_len} positions needs {per_slot / GIB:.2f} GiB, "
            f"the budget is {plan.budget_bytes / GIB:.2f} GiB ({total_bytes / GIB:.1f} GiB x {fraction:g} less "
            f"{used_bytes / GIB:.1f} GiB in use after the weights and {reserve_bytes / GIB:.1f} GiB for activations, "
            "CUDA graphs and the prefix cache). Lower HIGGS_MAX_CACHE_LEN or HIGGS_PREFIX_CACHE_MB, raise "
            "HIGGS_GPU_MEMORY_FRACTION, free the GPU of other processes, or use a GPU with more memory")
    return KvPlan(int(slots), max_cache_len, bytes_per_position, total_bytes, used_bytes, fraction, reserve_bytes)


def plan_for_device(model, device, max_batch: int, max_cache_len: int, fraction: float,
                    prefix_cache_bytes: int = 0) -> KvPlan | None:
    """The plan on a CUDA device, from what it reports now (the weights loaded), keeping room for
    the prefix cache to fill; None elsewhere (CPU memory is the host's: the configured sizes stand)."""
    import torch

    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    itemsize = next(model.parameters()).element_size()
    return plan_kv(total, total - free, kv_bytes_per_position(model.config, itemsize), max_batch, max_cache_len,
                   fraction, RESERVE_BYTES + prefix_cache_bytes)
