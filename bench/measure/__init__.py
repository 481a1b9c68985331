"""Facts about the machine and the code a number came from: ``hardware`` answers what the
device can run before torch is imported (``bench run --dry-run`` stays fast), ``provenance``
collects the ``env.*`` tags every run records (``python -m bench.measure.provenance``)."""
