"""The reference for the sampler's filters: transformers' warpers (what upstream's `generate`
applies: temperature, top-k with ties kept, top-p on the renormalised result), with tied
scores ordered by code."""

import contextlib

import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper


@contextlib.contextmanager
def ties_in_code_order():
    """Transformers' top-p sorts with `torch.sort`, whose order for tied scores is whatever the
    kernel gives (on the CPU it changes with the number of rows). This sampler orders ties by
    code; the reference is then transformers' warpers with a stable sort."""
    original = torch.sort

    def stable_sort(input, dim=-1, descending=False, **kwargs):
        return original(input, dim=dim, descending=descending, stable=True)

    torch.sort = stable_sort
    try:
        yield
    finally:
        torch.sort = original


def reference_scores(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    with ties_in_code_order():
        scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
        if top_k:
            scores = TopKLogitsWarper(top_k)(None, scores)
        if top_p < 1.0:
            scores = TopPLogitsWarper(top_p)(None, scores)
    return scores


def reference_support(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    return torch.isfinite(reference_scores(logits, temperature, top_k, top_p))


def reference_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    return reference_scores(logits, temperature, top_k, top_p).softmax(dim=-1)


