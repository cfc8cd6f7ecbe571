"""docs/cli.md, written from the parser itself: every command, every flag, its default and its
help. `python -m app.cli_reference > docs/cli.md` (`make docs`); a test holds the file to it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from app.cli import build_parser

HEADER = """# Command line reference

Every `higgs-tts` command and flag, written from the parser (`make docs`; a test fails when this
file and the code differ). Settings read from the environment are in
[configuration.md](configuration.md); request limits and error codes in [requests.md](requests.md).
"""


def commands(parser: argparse.ArgumentParser, name: str,
             summary: str = "") -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(full command, its one-line help, its parser), depth first, in the order --help lists them."""
    yield name, summary, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for sub, subparser in action.choices.items():
                yield from commands(subparser, f"{name} {sub}", helps.get(sub, ""))


def arguments(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, str]]:
    """(the argument as typed, its default, its help) for each argument but --help and the subcommands."""
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            shown = ", ".join(action.option_strings)
            if action.nargs == "?":
                shown += f" [{action.metavar or action.dest.upper()}]"
            elif action.nargs != 0:
                shown += f" {action.metavar or action.dest.upper()}"
        else:
            shown = action.metavar or action.dest
        default = "" if action.default in (None, argparse.SUPPRESS) or action.nargs == 0 else f"`{action.default}`"
        yield shown, default, " ".join((action.help or "").split()).replace("%(default)s", str(action.default))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    out = [HEADER]
    for name, summary, parser in commands(build_parser(), "higgs-tts"):
        rows = list(arguments(parser))
        out.append(f"\n## `{name}`\n")
        if summary:
            out.append(f"\n{summary[0].upper()}{summary[1:]}.\n" if not summary.endswith(".") else f"\n{summary}\n")
        if rows:
            out.append("\n| argument | default | what it is |\n|---|---|---|\n")
            out.extend(f"| `{shown}` | {default} | {_cell(text)} |\n" for shown, default, text in rows)
    return "".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
