"""The VoiceLibrary contract, for every implementation."""

import pytest

from adapters.fake import InMemoryVoiceLibrary
from core.domain.errors import DomainError

LIBRARIES = {"memory": lambda tmp_path: InMemoryVoiceLibrary.with_demo_voices()}


@pytest.fixture(params=sorted(LIBRARIES))
def library(request, tmp_path):
    return LIBRARIES[request.param](tmp_path)


def test_lists_at_least_two_voices_sorted(library):
    names = [v.name for v in library.list()]
    assert len(names) >= 2 and names == sorted(names)


def test_every_listed_voice_can_be_fetched(library):
    for info in library.list():
        prompt = library.get(info.name)
        assert prompt.name == info.name
        assert prompt.transcript.strip() and prompt.transcript == info.transcript
        assert prompt.audio[:4] in (b"RIFF", b"fLaC", b"OggS")
        assert len(prompt.content_hash) == 64


@pytest.mark.parametrize("name", ["nobody", "../belinda", "belinda/../../etc/passwd", ""])
def test_unknown_or_hostile_names_are_unknown_voice(library, name):
    with pytest.raises(DomainError) as info:
        library.get(name)
    assert info.value.code in ("UNKNOWN_VOICE", "INVALID_VOICE_NAME")
