"""The RunPod Serverless driving adapter: job input/output mapping, the handlers (one-shot
and streaming), and the worker's metrics (its health routes are the HTTP adapter's)."""

from adapters.runpod.handler import RunpodWorker, WorkerOptions
from adapters.runpod.metrics import WorkerMetrics
from adapters.runpod.schema import FIELDS, JobOutput, request_from_input

__all__ = [
    "FIELDS",
    "JobOutput",
    "RunpodWorker",
    "WorkerMetrics",
    "WorkerOptions",
    "request_from_input",
]
