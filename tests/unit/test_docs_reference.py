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
