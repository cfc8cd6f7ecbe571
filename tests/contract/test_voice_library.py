"""The VoiceLibrary contract, for every implementation."""

import pytest

from adapters.fake import InMemoryVoiceLibrary
from core.domain.errors import DomainError

def _volume(request):
    from adapters.voices import VolumeVoiceLibrary

    return VolumeVoiceLibrary(request.getfixturevalue("demo_bundle").voices)


LIBRARIES = {"memory": lambda request: InMemoryVoiceLibrary.with_demo_voices(), "volume": _volume}


@pytest.fixture(params=sorted(LIBRARIES))
def library(request):
    return LIBRARIES[request.param](request)


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


def test_volume_library_ignores_incomplete_and_badly_named_voices(tmp_path):
    from adapters.voices import VolumeVoiceLibrary
    from adapters.fake import tone_clip

    (tmp_path / "ok.wav").write_bytes(tone_clip(200.0, 0.3))
    (tmp_path / "ok.txt").write_text("Fine.\n")
    (tmp_path / "no_audio.txt").write_text("Missing its clip.")
    (tmp_path / "bad name.wav").write_bytes(tone_clip(200.0, 0.3))
    (tmp_path / "bad name.txt").write_text("Spaces are not allowed.")
    library = VolumeVoiceLibrary(tmp_path)
    assert [(v.name, v.transcript, v.duration_seconds) for v in library.list()] == [("ok", "Fine.", 0.3)]
    with pytest.raises(DomainError):
        library.get("no_audio")
    assert VolumeVoiceLibrary(tmp_path / "missing").list() == []
