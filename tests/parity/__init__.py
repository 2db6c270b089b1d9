"""Parity with the official TF2 agent; ``official.py`` is also imported by ``benchmarks.learning_parity``."""
