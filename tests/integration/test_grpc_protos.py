"""The committed stubs are exactly what `make protos` makes from protos/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "higgs_tts"


def generated_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "__init__.py" and "__pycache__" not in p.parts
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "protos" / "generate.py"), str(tmp_path)],
        check=True, capture_output=True, timeout=60,
    )
    fresh = generated_files(tmp_path / "higgs_tts")
    committed = generated_files(GENERATED)
    assert set(fresh) == {"v1/speech_pb2.py", "v1/speech_pb2.pyi", "v1/speech_pb2_grpc.py"}
    assert set(committed) == set(fresh), "stale or missing generated files: run `make protos`"
    for name, data in fresh.items():
        assert committed[name] == data, f"higgs_tts/{name} differs from protos/: run `make protos`"


def test_every_generated_package_imports_as_a_package():
    for folder in (GENERATED, GENERATED / "v1"):
        assert (folder / "__init__.py").is_file()
    from higgs_tts.v1 import speech_pb2

    assert speech_pb2.DESCRIPTOR.package == "higgs_tts.v1"
    assert set(speech_pb2.DESCRIPTOR.services_by_name) == {"SpeechService"}
