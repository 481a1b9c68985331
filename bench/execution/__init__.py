"""Running a recipe's (variant, seed) tasks: each task claims its variant (a lease in the
tracking store, under a lock), trains it through ``run_recorded`` and returns its row. The local
executor runs each task in its own child process; the Ray executor runs each as a Ray task."""
