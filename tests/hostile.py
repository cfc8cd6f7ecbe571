"""What the hostile-input suites of every face share: the hostile values, and what no output
may contain."""

from __future__ import annotations

import math
import re

from core.domain.errors import ErrorCode, ErrorType

CODES = {c.value for c in ErrorCode}
TYPES = {t.value for t in ErrorType}
MB = 1 << 20
# what no output may contain: tracebacks, source locations, the worker's filesystem
LEAKS = re.compile(r"Traceback|File \"|site-packages|/tmp/|/work/|/root/|/usr/|\.py\b|pytest-of")

WRONG_TYPES = {"int": 7, "float": 1.5, "bool": True, "list": ["a"], "dict": {"a": 1},
               "nested": {"a": {"b": {"c": [1, {"d": [[[]]]}]}}}}
BAD_NUMBERS = {"string": "5", "list": [1], "dict": {}, "bool": True, "negative": -1, "huge": 10**30,
               "-huge": -10**30, "2^63": 2**63, "1e308": 1e308, "NaN": math.nan, "Infinity": math.inf,
               "-Infinity": -math.inf, "zero": 0, "fraction": 0.5}
# strings no text field may take: lone surrogates, and Unicode's control characters (category
# Cc: C0, DEL, C1) other than tab and line breaks...
BAD_TEXT = {"lone high surrogate": "\ud800", "lone low surrogate": "x\udc00y", "NUL": "a\x00b", "bell": "\x07",
            "escape sequence": "\x1b[2J", "DEL": "\x7f", "C1 PAD": "a\x80b", "C1 CSI": "\x9b[31m",
            "NEL": "line\x85break", "C1 APC": "\x9f"}
# ...and strings that are odd but not wrong for free text
ODD_TEXT = {"1 MB": "x" * MB, "RTL override": "\u202eabc", "emoji": "🎙️ hi", "newline": "a\nb"}
