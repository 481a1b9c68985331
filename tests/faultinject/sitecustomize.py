"""Python imports ``sitecustomize`` at the start of every interpreter, and a ``bench`` process's
children (forkserver, spawned tune workers, Ray workers) inherit ``PYTHONPATH`` and the
environment: with this folder first on ``PYTHONPATH``, the fault points of ``BENCH_FAULT`` are
armed in each of them before bench is imported (faultpoints.py). Unarmed, it imports nothing.
(It shadows any other ``sitecustomize``; none is installed where the tests run.)"""

import os

if os.environ.get("BENCH_FAULT"):
    import sys

    import faultpoints

    try:
        faultpoints.install(os.environ["BENCH_FAULT"])
    except ValueError as exc:  # a typo must not leave a test waiting for a point that never fires
        print(exc, file=sys.stderr, flush=True)
        os._exit(2)  # site.py reports and ignores a plain exception
