"""``bench report``: variants aggregated over seeds, with honest small-n uncertainty, against a
baseline, on the accuracy / speed / memory trade-off, with the provenance of every run.
``fetch`` reads MLflow, ``stats`` holds the pure statistics, ``tables`` and ``effects`` build the
DataFrames, ``environment`` reads the runs' ``env.*`` tags, ``plots`` draws,
``markdown`` and ``document`` write report.md and report.html, ``compare`` sets studies side by
side, ``build`` ties them together and ``api.report_tables`` gives the tables to Python.

``calibrate`` runs simulated studies through the same decision code (``bench calibrate``).
"""


def report_tables(*args, **kwargs):
    """See ``bench.report.api.report_tables`` (imported lazily: pandas and MLflow are heavy)."""
    from bench.report.api import report_tables as tables

    return tables(*args, **kwargs)
