"""Fixtures of the end-to-end tests: a headless browser for the pages."""

from tests.browser import browser  # noqa: F401  (a fixture, used by name)
