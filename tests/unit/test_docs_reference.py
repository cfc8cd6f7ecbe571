"""The reference lists in docs/ hold what the code holds: every error code."""

import re
from pathlib import Path

from core.domain.errors import ErrorCode

README = (Path(__file__).resolve().parents[2] / "docs" / "requests.md").read_text(encoding="utf-8")


def test_every_error_code_is_listed_and_nothing_else():
    start = README.index("Error codes are stable")
    listed = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", README[start:README.index("core/domain/errors.py", start)]))
    codes = {c.value for c in ErrorCode}
    assert codes - listed == set(), "codes the README does not list"
    assert listed - codes == set(), "codes the README lists that do not exist"


DOCS = [Path(__file__).resolve().parents[2] / "README.md",
        *sorted((Path(__file__).resolve().parents[2] / "docs").glob("*.md"))]


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", path.read_text(encoding="utf-8"), re.M):
        out.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return out


def test_every_link_between_the_docs_lands_on_a_file_and_heading():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
                broken.append(f"{doc.name}: {target}")
    assert not broken, broken


# -- the command line: docs/cli.md is written from the parser; every flag the docs use exists ------

ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_reference_is_the_parsers():
    from app.cli_reference import render

    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), \
        "docs/cli.md differs from the parser: run `make docs`"


def test_every_argument_says_what_it_is():
    from app.cli import build_parser
    from app.cli_reference import arguments, commands

    silent = [f"{name} {shown}" for name, _, parser in commands(build_parser(), "higgs-tts")
              for shown, _, text in arguments(parser) if not text]
    assert silent == []


def _flags_by_command() -> dict[str, set[str]]:
    import argparse

    from app.cli import build_parser
    from app.cli_reference import commands

    out = {}
    for name, _, parser in commands(build_parser(), "higgs-tts"):
        out[name] = {o for a in parser._actions for o in a.option_strings if not isinstance(a, argparse._HelpAction)}
        out[name] |= {"--help", "-h"}
    return out


def test_every_command_and_flag_the_docs_show_exists():
    """Each `higgs-tts <command> ... --flag` in the README and docs/: the command is one the
    parser has and the flags are that command's (a renamed flag leaves no stale example)."""
    known = _flags_by_command()
    wrong, seen = [], 0
    for doc in DOCS:
        for line in doc.read_text(encoding="utf-8").splitlines():
            for use in re.findall(r"higgs-tts((?: [a-z][a-z-]*)*)((?: [^`#|;&]*)?)", line):
                words, rest = use[0].split(), use[1]
                command = "higgs-tts"
                while words and f"{command} {words[0]}" in known:
                    command += " " + words.pop(0)
                if command == "higgs-tts" and words:  # `higgs-tts` the project's name, in prose
                    continue
                seen += 1
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", " ".join(words) + rest):
                    if flag not in known[command] and flag not in known["higgs-tts"]:
                        wrong.append(f"{doc.name}: {command} {flag}")
    assert wrong == [] and seen > 20, (wrong, seen)


def test_every_http_and_runpod_field_is_documented():
    from adapters.http.schema import FIELDS as HTTP_FIELDS
    from adapters.runpod.schema import FIELDS as RUNPOD_FIELDS

    http = (ROOT / "docs" / "http.md").read_text(encoding="utf-8") + README
    runpod = (ROOT / "docs" / "runpod.md").read_text(encoding="utf-8") + README
    assert sorted(f for f in HTTP_FIELDS if f"`{f}`" not in http) == []
    assert sorted(f for f in RUNPOD_FIELDS if f"`{f}`" not in runpod and f not in README) == []

