"""The batched decode forward, gpt-fast style, over the transformers model's own weights.

A decode step feeds one frame of audio codes per row and runs every layer's audio path (audio
layernorms and audio MLP: with no text token in the step, that is the path the model takes).
transformers' forward launches about 48 operators per layer (separate q/k/v and gate/up
projections, a 7-op RMSNorm, a 12-op rotary embedding) and its `StaticCache` keeps one position
for the whole batch. Here q/k/v and gate/up are fused at load (the model's parameters become
views of the fused tensors, so no weight is held twice), RMSNorm is one kernel, rotary reads a
precomputed float32 table, and every row writes and reads its own KV positions.

`SlotKV` is one KV buffer, `max_batch x max_cache_len`: row r of it is slot r. The prompt of a
slot is prefilled by the transformers model itself through a `StaticCache` whose layers are views
of that row, so both forwards share one cache layout (keys after rotary, [heads, position, dim])."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from boson_multimodal.limits import MAX_BATCH
from boson_multimodal.sampling import arange_once


def bucket_sizes(max_cache_len: int, smallest: int = 1024, linear: bool = False) -> list[int]:
    """KV lengths that attention reads through: doubling from `smallest` up to the whole cache
    (each is a CUDA graph), or every multiple of `smallest` (`linear`, where nothing is
    captured and reading less is all that counts)."""
    sizes, size = [], smallest
    while size < max_cache_len:
        sizes.append(size)
        size = size + smallest if linear else size * 2
    sizes.append(max_cache_len)
    return sizes


class SlotKV:
    """The KV cache of every slot: per layer one [max_batch, 2, kv_heads, max_cache_len,
    head_dim] tensor, keys then values, so a step writes both with one indexed copy."""

    def __init__(self, config, max_batch: int, max_cache_len: int, device, dtype) -> None:
        self.config = config
        self.max_batch, self.max_cache_len = max_batch, max_cache_len
        shape = (max_batch, 2, config.num_key_value_heads, max_cache_len, config.head_dim)
        self.layers = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.layers)

    def static_cache(self, slot: int, size: int):
        """A transformers StaticCache over slot `slot`'s first `size` positions (for prefill)."""
        from transformers import StaticCache

        cache = StaticCache(config=self.config, max_cache_len=size)
        heads, head_dim = self.config.num_key_value_heads, self.config.head_dim
        for layer, both in zip(cache.layers, self.layers):
            layer.device = both.device
            layer.batch_size, layer.num_heads = 1, heads
            layer.k_head_dim = layer.v_head_dim = head_dim
            layer.keys, layer.values = both[slot:slot + 1, 0, :, :size], both[slot:slot + 1, 1, :, :size]
            layer.cumulative_length = torch.zeros((), dtype=torch.long, device=both.device)
            layer.is_initialized = True
        return cache


# on the CPU, weights up to this size are also kept in oneDNN's packed layout: for the few rows
# of a decode step its kernels run 2-4x faster than MKL's GEMM (measured on 2 AVX-512 cores);
# past it (the real model on a CPU) the extra copy would cost more memory than it is worth
PACKED_CPU_BUDGET = 1 << 30


def _packs(dtype: torch.dtype) -> bool:
    """Whether oneDNN packs weights of this dtype on this CPU (bf16 and fp16 need AVX-512 or
    AVX-NE-CONVERT: on an AVX2-only CPU the reorder refuses them, and MKL's GEMM serves)."""
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if dtype == torch.float16:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return dtype == torch.float32


class Projection:
    """x @ weight.T for a [out, in] weight: one GEMM (cuBLAS, MKL) or, on the CPU when packed,
    oneDNN's linear over a copy of the weight in its blocked layout."""

    def __init__(self, weight: torch.Tensor, pack_rows: int = 0) -> None:
        self.weight_t = weight.t()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), pack_rows) if pack_rows else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
        return torch.mm(x, self.weight_t)

    def add(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """residual + x @ weight.T, in one kernel."""
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, self.packed, None, "add")
        return torch.addmm(residual, x, self.weight_t)


@dataclass(frozen=True)
class Step:
    """What every layer of one decode step shares: the batch, the KV positions read, each row's
    position (and `rows`, its index), the rotation of q, k and v at it, the attention mask."""

    batch: int
    length: int
    rows: torch.Tensor
    position: torch.Tensor
    cos: torch.Tensor  # [B, heads + 2 kv_heads, 2, dim/2]: rotary for q and k, identity for v
    sin: torch.Tensor
    mask: torch.Tensor  # additive: [B, 1, 1, length] (SDPA) or [B * kv_heads, group, length] (matmuls)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], weight, eps)[0]


@dataclass
class Attention:
    """Pre-norm attention and its residual: q, k, v in one projection and one rotation; k and v
    into the row's cache at its position; one query over its first `length` (SDPA, or matmuls)."""

    norm: torch.Tensor
    qkv: Projection  # q, k and v in one weight
    o: Projection
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    use_sdpa: bool

    def __call__(self, x: torch.Tensor, cache: torch.Tensor, step: Step) -> torch.Tensor:
        batch, length, heads, kv_heads, dim = step.batch, step.length, self.heads, self.kv_heads, self.head_dim
        group = heads // kv_heads
        h = rms_norm(x, self.norm, self.eps)
        qkv = _rotate(self.qkv(h).view(batch, heads + 2 * kv_heads, 2, dim // 2), step.cos, step.sin)
        cache[step.rows, :, :, step.position] = qkv[:, heads:].view(batch, 2, kv_heads, dim)
        q = qkv[:, :heads]
        keys, values = cache[:batch, 0, :, :length], cache[:batch, 1, :, :length]
        scaling = dim ** -0.5
        if self.use_sdpa:
            attended = torch.nn.functional.scaled_dot_product_attention(
                q[:, :, None], keys, values, attn_mask=step.mask, scale=scaling, enable_gqa=group > 1)
        else:  # on the CPU, plain batched matmuls beat SDPA's kernel for one query per row
            scores = torch.baddbmm(step.mask, q.reshape(batch * kv_heads, group, dim),
                                   keys.reshape(batch * kv_heads, length, dim).transpose(1, 2), alpha=scaling)
            attended = torch.bmm(scores.softmax(dim=-1), values.reshape(batch * kv_heads, length, dim))
        return self.o.add(x, attended.reshape(batch, heads * dim))


@dataclass
class FeedForward:
    """Pre-norm SwiGLU with its residual: gate and up in one projection."""

    norm: torch.Tensor
    gate_up: Projection  # gate and up in one weight
    down: Projection
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(rms_norm(x, self.norm, self.eps)).chunk(2, dim=-1)
        return self.down.add(x, torch.nn.functional.silu(gate) * up)


@dataclass
class TransformerBlock:
    attention: Attention
    feed_forward: FeedForward

    def __call__(self, x: torch.Tensor, cache: torch.Tensor, step: Step) -> torch.Tensor:
        return self.feed_forward(self.attention(x, cache, step))


def _fuse(linears: list[torch.nn.Linear]) -> torch.Tensor:
    """One weight for several projections of the same input; each Linear keeps a view of it."""
    if any(linear.bias is not None for linear in linears):
        raise ValueError("fused projections with bias are not supported")
    fused = torch.cat([linear.weight.detach() for linear in linears], dim=0)
    offset = 0
    for linear in linears:
        rows = linear.weight.shape[0]
        linear.weight = torch.nn.Parameter(fused[offset:offset + rows], requires_grad=False)
        offset += rows
    return fused


class DecodeModel:
    """The model's decode step for a batch of slots, each at its own position."""

    def __init__(self, model, max_positions: int, max_batch: int = MAX_BATCH, cpu_kernels: bool | None = None) -> None:
        """`cpu_kernels`: oneDNN-packed weights (within PACKED_CPU_BUDGET) and attention as
        batched matmuls, the faster choices on a CPU; default: on when the model is on the CPU.
        Off, the step is the one CUDA runs (GEMMs and SDPA)."""
        config = model.config
        inner = model.model
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim, self.hidden = config.head_dim, config.hidden_size
        self.eps = config.rms_norm_eps
        self.num_codebooks, self.codebook_size = int(config.num_codebooks), int(config.codebook_size)
        on_cpu = next(model.parameters()).device.type == "cpu"
        self.cpu_kernels = on_cpu if cpu_kernels is None else cpu_kernels
        audio_bytes = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
                          if "self_attn" in name or "audio_mlp" in name or "audio_lm_head" in name)
        dtype = next(model.parameters()).dtype
        pack = max_batch if (self.cpu_kernels and on_cpu and _packs(dtype) and audio_bytes <= PACKED_CPU_BUDGET) else 0
        self.packed = bool(pack)
        self.use_sdpa = not self.cpu_kernels
        if config.hidden_act != "silu":
            raise ValueError(f"activation {config.hidden_act!r} is not supported by the fused decode step")
        self.layers = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.audio_mlp
            self.layers.append(TransformerBlock(
                Attention(layer.audio_input_layernorm.weight.detach(),
                          Projection(_fuse([attn.q_proj, attn.k_proj, attn.v_proj]), pack),
                          Projection(attn.o_proj.weight.detach(), pack),
                          self.heads, self.kv_heads, self.head_dim, self.eps, self.use_sdpa),
                FeedForward(layer.audio_post_attention_layernorm.weight.detach(),
                            Projection(_fuse([mlp.gate_proj, mlp.up_proj]), pack),
                            Projection(mlp.down_proj.weight.detach(), pack), self.eps),
            ))
        self.norm = inner.norm.weight.detach()
        self.embed = inner.embed_audio_tokens.embed_audio_tokens.weight.detach()
        self.offsets = inner.embed_audio_tokens.audio_tokens_offsets.detach().clone()
        self.head = Projection(model.audio_lm_head.weight.detach(), pack)
        self.cos, self.sin = self._rotary_table(inner.rotary_emb, max_positions)
        shape = (max_batch, self.kv_heads, 2, self.head_dim // 2)
        self.ones = torch.ones(shape, device=self.cos.device)  # the value heads' "rotation"
        self.zeros = torch.zeros(shape, device=self.cos.device)

    @staticmethod
    def _rotary_table(rotary, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate-half RoPE as x * cos + flip_halves(x) * sin, so the tables hold, in float32
        and per position, [cos, cos] and [-sin, sin] as [2, head_dim / 2]."""
        inv_freq = rotary.inv_freq.float()
        angles = torch.arange(positions, device=inv_freq.device, dtype=torch.float32)[:, None] * inv_freq[None]
        scale = float(rotary.attention_scaling)
        cos, sin = angles.cos() * scale, angles.sin() * scale
        return torch.stack((cos, cos), dim=1), torch.stack((-sin, sin), dim=1)

    def forward(self, kv: SlotKV, codes: torch.Tensor, position: torch.Tensor, length: int) -> torch.Tensor:
        """Logits [B, codebooks, codebook_size] (float32) for frames `codes` [B, codebooks] at
        `position` [B]; each row writes its keys and values at its position, then attends to
        its positions 0..position within the first `length` of the cache."""
        x = self.embed[codes + self.offsets].sum(dim=1)
        step = self._step(codes.shape[0], length, position)
        for block, cache in zip(self.layers, kv.layers):
            x = block(x, cache, step)
        x = rms_norm(x, self.norm, self.eps)
        return self.head(x).view(step.batch, self.num_codebooks, self.codebook_size).float()

    def _step(self, batch: int, length: int, position: torch.Tensor) -> Step:
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        group = heads // kv_heads
        # rotary for q and k, identity for v (cos 1, sin 0): one rotation over all of qkv,
        # whose k and v then go into the cache with one indexed copy; [B, heads + 2 kv_heads, 2, dim/2]
        cos = torch.cat((self.cos[position][:, None].expand(batch, heads + kv_heads, 2, dim // 2),
                         self.ones[:batch]), dim=1)
        sin = torch.cat((self.sin[position][:, None].expand(batch, heads + kv_heads, 2, dim // 2),
                         self.zeros[:batch]), dim=1)
        # additive mask, shared by every layer: [B, 1, 1, length] for SDPA, or one row per
        # (row, KV head, query head of its group) for the batched matmuls
        mask = torch.where(arange_once(length, position.device)[None] <= position[:, None], 0.0,
                           float("-inf")).to(self.embed.dtype)
        if self.use_sdpa:
            mask = mask[:, None, None]
        else:
            mask = mask[:, None, None].expand(batch, kv_heads, group, length).reshape(batch * kv_heads, group, length)
        return Step(batch, length, arange_once(batch, position.device), position, cos, sin, mask)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on [B, heads, 2, dim/2] halves, in float32, back in x's dtype as
    [B, heads, dim]: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), transformers' q * cos +
    rotate_half(q) * sin."""
    return torch.addcmul(x * cos, x.flip(-2), sin).flatten(-2).to(x.dtype)
