"""The README's reference lists hold what the code holds: every error code."""

import re
from pathlib import Path

from core.domain.errors import ErrorCode

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_error_code_is_listed_and_nothing_else():
    start = README.index("Error codes are stable")
    listed = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", README[start:README.index("core/domain/errors.py", start)]))
    codes = {c.value for c in ErrorCode}
    assert codes - listed == set(), "codes the README does not list"
    assert listed - codes == set(), "codes the README lists that do not exist"
