"""One-off diagnostics that explain a committed result, run as
``python -m benchmarks.diagnostics.<tool>``; each result links the one that wrote it."""
