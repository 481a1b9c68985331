"""``bench report``: variants aggregated over seeds, with honest small-n uncertainty, against a
baseline, on the accuracy / speed / memory trade-off, with the provenance of every run.
``fetch`` reads MLflow, ``stats`` holds the pure statistics, ``tables`` and ``effects`` build the
DataFrames, ``environment`` reads the runs' ``env.*`` tags, ``plots`` draws, ``markdown`` and
``document`` write report.md and report.html, ``compare`` sets studies side by side, ``build``
ties them together and ``api.report_tables`` gives the tables to Python.

``sequential`` decides ``--until-decided`` runs; ``calibrate`` runs simulated studies through the
same decision code (``bench calibrate``).
"""
