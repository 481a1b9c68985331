"""Benchmarks run only in `nox -s benchmark` (marker ``benchmark``), never in the test suite."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.benchmark)
