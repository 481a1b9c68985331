"""``bench report``: variants aggregated over seeds, with uncertainty, against a baseline, on
the accuracy / speed / memory trade-off. ``fetch`` reads MLflow, ``stats`` holds the pure
statistics, ``tables`` builds the DataFrames, ``plots`` draws them, ``markdown`` writes
report.md, and ``build.make_report`` ties them together."""
