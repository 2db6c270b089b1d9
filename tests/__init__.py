"""Reverie's test suite (``tests/README.md``); a package so that ``tests.parity`` imports by name."""
