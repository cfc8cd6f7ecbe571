"""The RunPod Serverless driving adapter: job input/output mapping, the handlers (one-shot
and streaming), and the worker's health/readiness/metrics HTTP server."""

from adapters.runpod.handler import RunpodWorker, WorkerOptions
from adapters.runpod.health import HealthServer
from adapters.runpod.metrics import WorkerMetrics
from adapters.runpod.schema import FIELDS, JobOutput, request_from_input

__all__ = [
    "FIELDS",
    "HealthServer",
    "JobOutput",
    "RunpodWorker",
    "WorkerMetrics",
    "WorkerOptions",
    "request_from_input",
]
