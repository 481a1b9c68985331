"""Imported last by the forkserver (``local.PRELOAD``), for its side effect: the server's stdout
and stderr become /dev/null once it has imported everything.

Why: the server inherits the driver's stdout/stderr, and each child gets the driver's current
ones anyway (``local.run_child``). Kept open, the server's copies outlive the driver: when the
driver exits, the server tears down torch, MLflow and timm (~2-4 s on a 2-core box) before the
last copy closes, so whoever reads bench's output through a pipe (``bench run | tee``,
``subprocess.run(capture_output=True)``, CI) waits that long after bench has finished."""

import os
import sys

for stream in (sys.stdout, sys.stderr):
    if stream is not None:
        stream.flush()
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
os.dup2(_null, 2)
os.close(_null)
