"""Imported last by the forkserver (``local.PRELOAD``), for two side effects once the server has
imported everything its children need.

1. ``gc.freeze()``: the imported heap (torch, MLflow, timm: about a million objects) moves to
   the permanent generation, so a child's collections skip it instead of walking it, and copying
   each page they touch (the use the ``gc`` docs give for a server that forks).
2. The server's stdout and stderr become /dev/null. It inherited the driver's, and each child
   gets the driver's current ones anyway (``local.run_child``). Kept open, the server's copies
   outlive the driver: when the driver exits the server tears down torch, MLflow and timm (~2-4 s
   on a 2-core box) before the last copy closes, so whoever reads bench's output through a pipe
   (``bench run | tee``, ``subprocess.run(capture_output=True)``, CI) waited that long after
   bench had finished."""

import gc
import os
import sys

gc.freeze()
for stream in (sys.stdout, sys.stderr):
    if stream is not None:
        stream.flush()
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
os.dup2(_null, 2)
os.close(_null)
