"""bench's import graph between its packages: no cycles, and every import points down the layers
below. A cycle makes each side unreadable and untestable without the other (and pulls the engine,
torch included, into the MLflow adapter); the table makes a new upward import a review question
rather than an accident.

Nodes: each subpackage (``bench/engine/``) and each top-level module (``bench/errors.py``) is a
node of its own; ``bench/__init__.py`` is the node ``bench`` (the Python API facade). The
modules of ``bench/util/`` are nodes of their own too (``util.signals``): unrelated leaf
helpers, grouped for tidiness, not for a shared job, and the MLflow adapter may use one (atomic
writes) but not the other (signal handling). Every import counts, at any depth:
function-local lazy imports (kept lazy so ``bench --help`` stays fast) and
``TYPE_CHECKING`` imports are dependencies all the same, and so is ``importlib.import_module`` of
a literal ``bench.`` name."""

from __future__ import annotations

import ast
import graphlib
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"

# Bottom first. A node may import any node of a lower layer, none of its own or a higher one.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "version", "util"),  # the exceptions every layer raises; bench.__version__; util's __init__
    (
        "util.fileio",
        "util.signals",
        "util.dataroot",
        "measure",
    ),  # atomic writes; signal-safe sections; the data folder; hardware, provenance
    ("recipe",),  # the recipe schema (no torch)
    ("components",),  # models, optimizers, losses, schedules; the name registry, its torch-free catalog
    ("data",),  # datasets and loaders
    ("tricks",),  # the engine's plug-ins: its services reach them through the run state
    ("engine", "tracking"),  # training; the MLflow adapter (neither imports the other)
    ("validate", "report"),  # recipe checks and preflight; the report, its statistics and calibration
    ("execution", "plan"),  # bench run: driver, recorded runs (local or Ray), progress, runs.csv; bench plan
    ("tune", "speedcheck"),  # Optuna studies; re-timing finished variants
    ("ui",),  # MLflow UI and optuna-dashboard over what run and tune recorded
    ("commands",),  # the CLI's subcommands and the Python API they call (commands/api.py)
    ("bench",),  # the ``import bench`` facade over the API
    ("cli",),
]
LAYER = {node: i for i, layer in enumerate(LAYERS) for node in layer}
# Packages of unrelated leaf modules: each module is a node ("util.signals"), not the package.
SPLIT = ("util",)
# The MLflow adapter knows runs, tags and metrics, not how a variant trains or how signals are handled.
TRACKING_MUST_NOT_REACH = ("engine", "util.signals")


def node_of(path: Path) -> str:
    parts = path.relative_to(BENCH).with_suffix("").parts
    if parts == ("__init__",):
        return "bench"
    if parts[0] in SPLIT and len(parts) > 1 and parts[1] != "__init__":
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def target_node(dotted: str) -> str | None:
    """The node a ``bench...`` module name belongs to; None outside bench."""
    parts = dotted.split(".")
    if parts[0] != "bench":
        return None
    if len(parts) > 2 and parts[1] in SPLIT:
        return f"{parts[1]}.{parts[2]}"
    return parts[1] if len(parts) > 1 else "bench"


def is_module(dotted: str) -> bool:
    """``bench.x.y`` is a module or package (not a name defined in one)."""
    path = BENCH.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(tree: ast.AST, module: str) -> list[tuple[str, int]]:
    """(bench module name, line) of every import in ``tree``, nested ones included."""
    out = []
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.Import):
            out += [(alias.name, stmt.lineno) for alias in stmt.names]
        elif isinstance(stmt, ast.ImportFrom):
            base = stmt.module or ""
            if stmt.level:  # relative: resolved against this module's package
                package = module.split(".")[: -stmt.level]
                base = ".".join(package + ([base] if base else []))
            if base.split(".")[0] == "bench":  # ``from bench.util import signals`` imports that module
                out += [
                    (f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base, stmt.lineno)
                    for a in stmt.names
                ]
            else:
                out.append((base, stmt.lineno))
        elif (
            isinstance(stmt, ast.Call)
            and getattr(stmt.func, "attr", getattr(stmt.func, "id", "")) == "import_module"
        ):
            arg = stmt.args[0] if stmt.args else None
            if isinstance(arg, ast.JoinedStr) and arg.values:
                arg = arg.values[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((arg.value.rstrip("."), stmt.lineno))
    return out


def import_graph() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) node pairs, each with the ``file:line`` of every import behind it."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(BENCH.rglob("*.py")):
        rel = path.relative_to(BENCH.parent)
        module = ".".join(rel.with_suffix("").parts)  # bench/x/__init__ is the package bench.x.__init__:
        if path.name == "__init__.py":  # its relative imports resolve against bench.x, as Python's do
            module = module.removesuffix(".__init__") + ".__init__"
        source = node_of(path)
        for name, line in imported(ast.parse(path.read_text(), str(path)), module):
            target = target_node(name)
            if target is not None and target != source:
                edges[(source, target)].append(f"{rel}:{line} imports {name}")
    return edges


def cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[tuple[str, str]]]:
    """Cycles as lists of (importer, imported) edges: graphlib names one, its first edge is set
    aside and the search goes on, so each cycle is reported, not only the first."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    found = []
    while True:
        try:
            graphlib.TopologicalSorter(graph).prepare()
            return found
        except graphlib.CycleError as exc:
            cycle = exc.args[1]  # [a, b, ..., a]: each imported by the one after it
            steps = [(cycle[i + 1], cycle[i]) for i in range(len(cycle) - 1)][::-1]
            found.append(steps)
            graph[steps[0][0]].discard(steps[0][1])


def test_the_packages_import_no_cycle():
    edges = import_graph()
    found = cycles(edges)
    text = [
        " -> ".join([steps[0][0]] + [b for _, b in steps]) + "".join(f"\n    {edges[s][0]}" for s in steps)
        for steps in found
    ]
    assert not found, f"{len(found)} import cycle(s):\n  " + "\n  ".join(text)


def test_every_import_points_down_the_layers():
    edges = import_graph()
    nodes = {n for edge in edges for n in edge} | {node_of(p) for p in BENCH.rglob("*.py")}
    unplaced = sorted(nodes - LAYER.keys())
    assert not unplaced, f"place these in LAYERS (tests/test_import_graph.py): {unplaced}"
    upward = [
        f"{site} ({source}, layer {LAYER[source]} -> {target}, layer {LAYER[target]})"
        for (source, target), sites in sorted(edges.items())
        if LAYER[target] >= LAYER[source]
        for site in sites
    ]
    assert not upward, "imports against the layers (tests/test_import_graph.py LAYERS):\n" + "\n".join(upward)


def test_tracking_is_a_pure_mlflow_adapter():
    """Not even through another node: importing tracking must not load the training loop (torch)
    or install signal handling."""
    edges = import_graph()
    path: dict[str, list[str]] = {"tracking": []}  # node -> the imports that reach it from tracking
    todo = ["tracking"]
    while todo:
        source = todo.pop()
        for (a, b), sites in edges.items():
            if a == source and b not in path:
                path[b] = path[source] + [sites[0]]
                todo.append(b)
    reached = {n: path[n] for n in TRACKING_MUST_NOT_REACH if n in path}
    assert not reached, "tracking reaches " + "; ".join(
        f"{n} via {' -> '.join(p)}" for n, p in reached.items()
    )


def test_test_modules_share_helpers_not_each_other():
    """Shared test helpers live in tests/helpers.py (and conftest, recipes, procs): a test module
    importing another test module runs that module's import-time code and couples the two."""
    offenders = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.test_"):
                offenders.append(f"tests/{path.name}:{node.lineno} imports {node.module}")
    assert not offenders, "\n".join(offenders)


def test_fault_injection_lives_in_the_tests():
    """bench has no test harness inside it: the tests reach its moments from outside
    (tests/faultinject/), by wrapping its functions in the processes a test starts."""
    words = ("fault_point", "FaultHook", "BENCH_FAULT", "bench.faults")
    found = [f"{path.relative_to(BENCH.parent)}:{n} {word}" for path in sorted(BENCH.rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) for word in words if word in line]  # fmt: skip
    assert not found, "fault injection in production code:\n" + "\n".join(found)


def test_bench_top_level_holds_only_its_entry_points():
    """Every other module lives in a package named for its job (issue 22): the top level is the
    map (the CLI, the errors every layer raises, the version), not a drawer of loose modules."""
    allowed = {"__init__", "__main__", "cli", "errors", "version"}
    loose = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in allowed)
    assert not loose, f"move these into a package by job (and place it in LAYERS): {loose}"


def test_a_variants_child_opens_the_mlflow_store_without_importing_it(tmp_path):
    """Each variant trains in a child forked from a server that imported ``PRELOAD``. MLflow's SQL
    store (SQLAlchemy, Alembic) must be among them: imported on a child's first store open, it cost
    every variant 0.85 s on 2 cores (README: "What the child costs")."""
    import subprocess
    import sys
    import textwrap

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    opens = (
        f"from mlflow.tracking import MlflowClient; MlflowClient(tracking_uri='{uri}').search_experiments()"
    )
    subprocess.run(
        [sys.executable, "-c", opens], check=True, capture_output=True
    )  # the store exists, as for a child
    child = textwrap.dedent(f"""
        import importlib, sys
        from bench.execution.local import PRELOAD
        for name in PRELOAD:
            importlib.import_module(name)
        before = set(sys.modules)
        {opens}
        new = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in ("sqlalchemy", "alembic"))
        open({str(tmp_path / "new.txt")!r}, "w").write(repr(new))  # PRELOAD's last module silences stdout
    """)
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", child], check=True, capture_output=True, text=True, cwd=repo)
    assert (tmp_path / "new.txt").read_text() == "[]"


def test_the_forkserver_lets_go_of_the_drivers_stdout_and_stderr(tmp_path):
    """Once it has imported ``PRELOAD``, the server holds /dev/null as stdout and stderr, not the
    driver's: a pipe reading ``bench run`` (CI, ``| tee``) then closes when the driver exits, not
    seconds later, after the server has torn down torch and MLflow. Its children still write to
    the driver's (each gets them passed: ``local.run_child``)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os
        from multiprocessing import forkserver
        from bench.execution.local import LocalExecutor
        LocalExecutor.warm()
        child = LocalExecutor.context().Process(target=os.getpid)
        child.start()  # served once the server has imported PRELOAD
        child.join()
        pid = forkserver._forkserver._forkserver_pid
        print(os.readlink(f"/proc/{pid}/fd/1"), os.readlink(f"/proc/{pid}/fd/2"))
    """)
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=repo, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["/dev/null", "/dev/null"], out.stdout
