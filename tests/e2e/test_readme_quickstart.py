"""The README's quick start, run as it is written: every shell line of its first block (the
install line excepted: this suite runs in what `make install` made, and CI runs that line
itself), then its Python block against the server the shell block started."""

import json
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tests.integration.runpod_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "make install && . .venv/bin/activate"

pytestmark = pytest.mark.slow


def quick_start() -> tuple[str, str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Quick start"):]
    section = section[:section.index("\n## ", 1)]
    shell = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return shell, python


def test_the_quick_start_installs_with_make():
    shell, _ = quick_start()
    first = shell.splitlines()[0]
    assert first.split("#")[0].strip() == INSTALL
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^install: ", makefile, re.M)


def test_every_line_of_the_quick_start_works_on_a_fresh_machine(tmp_path):
    shell, python = quick_start()
    port = str(free_port())
    lines = shell.splitlines()
    script = "\n".join(lines[1:]).replace("8000", port)  # the install line: see the module docstring
    assert "/tmp/higgs-demo" in script
    script = script.replace("/tmp/higgs-demo", str(tmp_path / "higgs-demo"))
    (tmp_path / "client.py").write_text(python.replace("8000", port))
    venv = Path(sys.executable).parent
    whole = (f"set -euo pipefail\nexport PATH={venv}:/usr/bin:/bin\n{script}\n"
             f"python client.py\nkill $(jobs -p)\nwait || true\n")
    done = subprocess.run(["bash", "-c", whole], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={"HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "HIGGS_DEVICE": "cpu",
                               "OTEL_TRACES_EXPORTER": "none", "NO_PROXY": "127.0.0.1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith(("[", "{"))]
    voices = next(item for item in lines if isinstance(item, list))
    assert [v["name"] for v in voices] == ["belinda", "en_man"]
    summary = next(item for item in lines if isinstance(item, dict) and "success" in item)
    assert summary["success"] is True and summary["out"] == "hello.wav"
    for name in ("hello.wav", "hello-http.wav", "hello-openai.wav"):
        with wave.open(str(tmp_path / name)) as audio:  # a streamed WAV's header cannot know its length:
            assert audio.getframerate() == 24000 and len(audio.readframes(10**7)) > 4800, name  # read to the end
