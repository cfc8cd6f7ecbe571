"""One decode slot's state for the sampling tests (the decoder keeps one row per slot)."""

import torch

from boson_multimodal.sampling import BIG, SamplingConfig, SlotState, end_of_stream, sample_frame


def one_slot(ids, *, step=0, eos_base=BIG, window=None, temperature=1.0, top_k=0, top_p=1.0, ras=(0, 2),
             greedy=False, seed=0) -> SlotState:
    state = SlotState.allocate(1, 4, ids, "cpu")
    state.start(SamplingConfig(temperature=0 if greedy else temperature, top_k=top_k, top_p=top_p,
                               ras_win_len=ras[0], ras_win_max_num_repeat=ras[1], seed=seed),
                torch.zeros((0, ids.num_codebooks), dtype=torch.long), ids)
    state.temperature.fill_(temperature)
    state.active.fill_(1)
    state.step.fill_(step)
    state.eos_base.fill_(eos_base)
    if window is not None:
        state.window[0].copy_(window)
    return state


def sample(logits, state, ids):
    """The frame [K] sampled for one slot from logits [K, C]."""
    return sample_frame(logits[None], state, ids)[0]


def sample_and_end(logits, state, ids):
    return end_of_stream(sample_frame(logits[None], state, ids), state, ids)[0]
