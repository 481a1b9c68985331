"""Running a recipe's (variant, seed) tasks under one owner (owner.py: a lock per recipe): each
task looks at its variant's run, trains it through ``run_recorded`` (resuming what a dead owner
left) and returns its row. The local executor runs each task in its own child process; the Ray
executor runs each as a Ray task.

``runner`` is ``bench run``'s driver; ``progress`` and ``estimate`` show how far it is and how
long is left; ``results`` writes the per-recipe ``runs.csv``.
"""
