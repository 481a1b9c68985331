"""One module per ``bench`` subcommand (see bench/cli.py).

``api`` is the Python API (``bench.run``, ``bench.tune_recipe``, ...): the subcommands call it,
so both front doors validate, record and write alike.
"""
