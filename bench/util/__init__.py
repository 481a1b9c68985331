"""Small leaf helpers that every layer may use and that know nothing of bench: atomic file
writes (``fileio``) and signal-safe bookkeeping (``signals``). Unrelated to each other, so
tests/test_import_graph.py places each module on its own (the MLflow adapter may write
files atomically but must not reach signal handling)."""
