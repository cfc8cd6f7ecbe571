"""The VoiceLibrary contract, for every implementation."""

import pytest

from adapters.fake import InMemoryVoiceLibrary
from core.domain.errors import DomainError


def _volume(request):
    from adapters.voices import VolumeVoiceLibrary

    return VolumeVoiceLibrary(request.getfixturevalue("demo_bundle").voices)


def _volume_copy(request):
    """A writable copy of the demo bundle's voices."""
    import shutil

    from adapters.voices import VolumeVoiceLibrary

    target = request.getfixturevalue("tmp_path") / "voices"
    shutil.copytree(request.getfixturevalue("demo_bundle").voices, target)
    return VolumeVoiceLibrary(target)


def _s3(request):
    """The demo voices under a prefix of a bucket on a real S3 server (SeaweedFS on loopback)."""
    from adapters.voices.s3 import S3VoiceLibrary

    seaweed, bucket = request.getfixturevalue("seaweed"), request.getfixturevalue("s3_bucket")
    library = S3VoiceLibrary(seaweed.client(), bucket, "team/voices")
    for info in _volume(request).list():
        library.add(_volume(request).get(info.name))
    return library


LIBRARIES = {"memory": lambda request: InMemoryVoiceLibrary.with_demo_voices(), "volume": _volume}
WRITABLE = {"memory": lambda request: InMemoryVoiceLibrary.with_demo_voices(), "volume": _volume_copy, "s3": _s3}


@pytest.fixture(params=sorted(LIBRARIES))
def library(request):
    return LIBRARIES[request.param](request)


@pytest.fixture(params=sorted(WRITABLE))
def writable(request):
    return WRITABLE[request.param](request)


def _clip(seconds=0.5, fmt="WAV", pitch=180.0):
    import io

    import numpy as np
    import soundfile

    t = np.arange(int(24000 * seconds)) / 24000
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), 24000, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_an_added_voice_is_listed_fetched_and_deleted(writable, fmt):
    from core.domain.voice import VoicePrompt

    before = [v.name for v in writable.list()]
    clip = _clip(fmt=fmt)
    info = writable.add(VoicePrompt("narrator_2", "  Read this, please.  ", clip))
    assert info.name == "narrator_2" and info.transcript == "Read this, please."
    assert [v.name for v in writable.list()] == sorted(before + ["narrator_2"])
    fetched = writable.get("narrator_2")
    assert fetched.audio == clip and fetched.transcript == "Read this, please."
    with pytest.raises(DomainError) as again:
        writable.add(VoicePrompt("narrator_2", "Other words.", _clip(pitch=300.0)))
    assert again.value.code == "VOICE_EXISTS"
    assert writable.get("narrator_2").audio == clip  # nothing was written over
    writable.delete("narrator_2")
    assert [v.name for v in writable.list()] == before
    with pytest.raises(DomainError) as gone:
        writable.get("narrator_2")
    assert gone.value.code == "UNKNOWN_VOICE"
    with pytest.raises(DomainError) as twice:
        writable.delete("narrator_2")
    assert twice.value.code == "UNKNOWN_VOICE"


@pytest.mark.parametrize("data", [b"", b"not audio at all", b"RIFF" + b"\0" * 40])
def test_a_clip_that_is_not_audio_is_refused_and_nothing_is_added(writable, data):
    from core.domain.voice import VoicePrompt

    before = writable.list()
    with pytest.raises(DomainError) as refused:
        writable.add(VoicePrompt("broken", "Words.", data))
    assert refused.value.code == "INVALID_REFERENCE_AUDIO"
    assert writable.list() == before


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "x" * 65])
def test_hostile_names_delete_nothing(writable, name):
    before = writable.list()
    with pytest.raises(DomainError) as refused:
        writable.delete(name)
    assert refused.value.code in ("UNKNOWN_VOICE", "INVALID_VOICE_NAME")
    assert writable.list() == before


def test_clips_over_30_seconds_are_refused_from_their_header(tmp_path):
    from adapters.voices import VolumeVoiceLibrary
    from core.domain.voice import VoicePrompt

    library = VolumeVoiceLibrary(tmp_path)
    with pytest.raises(DomainError) as refused:
        library.add(VoicePrompt("long", "Words.", _clip(seconds=31.0, fmt="FLAC")))
    assert refused.value.code == "INVALID_REFERENCE_AUDIO" and refused.value.details["actual_seconds"] == 31.0
    assert library.list() == []


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
    from adapters.fake import tone_clip
    from adapters.voices import VolumeVoiceLibrary

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
