"""The decode step's operator count, held: it is what a step costs beyond the weights' own
reads (every operator is a kernel launch without CUDA graphs). A refactor of the decoder or the
model step must not add any; an optimisation lowers the ceiling here."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from boson_multimodal.batch import BatchDecoder

# measured on the demo bundle (2 layers) at batch 8, KV 128, before the scheduler/executor split
CEILING = {"cuda_path": 165, "cpu_path": 169}


class Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("path, cpu_kernels", [("cuda_path", False), ("cpu_path", True)])
def test_a_step_runs_no_more_operators_than_it_did(demo_runtime, path, cpu_kernels):
    decoder = BatchDecoder(demo_runtime.bundle.model, max_batch=8, max_cache_len=256, cpu_kernels=cpu_kernels)
    try:
        with torch.inference_mode():
            decoder.executor.step_fn(8, 128)  # constants made on a first call are not part of a step
            with Counter() as counter:
                decoder.executor.step_fn(8, 128)
    finally:
        decoder.close()
    assert 0 < counter.count <= CEILING[path], counter.count
