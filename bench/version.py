"""bench's version, in a module of its own so that any layer can read it (``bench/__init__.py``
is the API facade on top: importing it from below would close a cycle)."""

__version__ = "0.1.0"
