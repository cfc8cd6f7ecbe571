"""The gRPC driving adapter: SpeechService over grpcio (stubs generated from protos/ into
`higgs_tts.v1`), with the standard health service and server reflection."""

from adapters.grpc.client import SpeechClient, StreamSummary
from adapters.grpc.generation import GenerationQueue
from adapters.grpc.server import SERVICE_NAME, ServerOptions, SpeechServer
from adapters.grpc.servicer import SpeechServicer

__all__ = [
    "SERVICE_NAME",
    "GenerationQueue",
    "ServerOptions",
    "SpeechClient",
    "SpeechServer",
    "SpeechServicer",
    "StreamSummary",
]
