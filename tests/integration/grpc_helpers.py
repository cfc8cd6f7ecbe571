"""Small helpers for the gRPC tests."""

import json
import time

import grpc

from adapters.grpc.status import ERROR_CODE_KEY, ERROR_DETAILS_KEY
from app.cli import main
from app.container import build_container
from app.settings import Settings
from higgs_tts.v1 import speech_pb2 as pb

TEXT = "The quick brown fox jumps over the lazy dog, twice over."  # 100 frames on the fake
LONG_TEXT = "word " * 200  # about 1800 frames on the fake: long enough to cancel mid-way
SAMPLES_PER_FRAME = 960


def speech_request(text=TEXT, voice="belinda", seed=5, **fields):
    voices = [pb.Voice(name=voice)] if voice else []
    return pb.SpeechRequest(text=text, voices=voices, sampling=pb.Sampling(seed=seed), **fields)


def kinds(messages):
    return [m.WhichOneof("event") for m in messages]


def domain_code(error: grpc.RpcError):
    return dict(error.trailing_metadata() or ()).get(ERROR_CODE_KEY)


def domain_details(error: grpc.RpcError):
    return json.loads(dict(error.trailing_metadata())[ERROR_DETAILS_KEY])


def collect(call):
    """Messages until the stream ends; the RpcError it ended with, or None."""
    messages = []
    try:
        for message in call:
            messages.append(message)
    except grpc.RpcError as error:
        return messages, error
    return messages, None


def wait_for(condition, timeout=10.0, interval=0.02):
    """Poll until condition() is truthy; its value, or AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def settled(read, quiet=0.3, timeout=10.0):
    """The value of read() once it has stopped changing for `quiet` seconds (a counter that
    still grows changes many times in that span)."""
    deadline = time.monotonic() + timeout
    value = read()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = read()
        if now == value:
            return value
        value = now
    raise AssertionError(f"still changing after {timeout}s")


def stream_cli(capsys, *args):
    """`higgs-tts stream ...` in this process, with a container of its own (as a client has):
    its exit code and the JSON line it printed."""
    code = main(["stream", *args], container=build_container(Settings(engine="fake", store="none")))
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])
