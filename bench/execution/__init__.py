"""``bench run`` under one owner per recipe (owner.py): the driver (runner.py) hands each
(variant, seed) task (task.py, trained through recorded.py) to an executor: a child process each
(local.py) or a Ray task each (ray_executor.py, cluster.py).
"""
