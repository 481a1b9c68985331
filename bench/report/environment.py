"""Provenance of the compared runs, read from their ``env.*`` tags (``bench.measure.provenance``): the
report's header, the warnings when runs were made on different devices or library versions, and
the variants whose bf16 figures were measured under emulation."""

from __future__ import annotations

import pandas as pd

from bench.measure.provenance import COMPARABLE, UNKNOWN

NORMALIZE = "bench.normalize"
PRECISION = "precision"  # column fetch adds from the run's train.precision param
# what must agree between compared runs: the comparable environment, and the code
CHECKED = (*COMPARABLE, "env.git_commit", "env.git_diff")
EMULATED_NOTE = "measured with bf16 emulated on a CPU without native bf16 (typically 20-40x slower than fp32)"


def _tag_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if c.startswith("env.") or c in (NORMALIZE, "bench.input.code")]


def _recorded(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs that carry provenance tags (runs logged before bench recorded them do not)."""
    done = runs[runs["status"] == "finished"] if "status" in runs else runs
    cols = _tag_columns(done)
    return done[done[cols].notna().any(axis=1)] if cols else done.iloc[0:0]


def provenance_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (tag, value) over the finished runs: ``key, value, runs``."""
    rec = _recorded(runs)
    tags = rec[sorted(_tag_columns(rec))].fillna(UNKNOWN).astype(str).melt(var_name="key")
    return tags.groupby(["key", "value"], sort=False).size().rename("runs").reset_index()


def warnings(runs: pd.DataFrame) -> list[str]:
    """Differences between the finished runs that make their numbers less comparable."""
    rec = _recorded(runs)
    out = []
    for key in CHECKED:
        if key not in rec:
            continue
        values = rec[key].fillna(UNKNOWN).astype(str)
        if values.nunique() > 1:
            groups = rec.groupby(values)["group"].agg(lambda g: ", ".join(sorted(set(g))))
            out.append(
                f"runs differ in `{key}`: " + "; ".join(f"{v} ({names})" for v, names in groups.items())
            )
    done = runs[runs["status"] == "finished"] if "status" in runs else runs
    missing = len(done) - len(rec)
    if missing and len(done):
        out.append(
            f"{missing} of {len(done)} finished run(s) carry no provenance tags (recorded by an older bench)"
        )
    return out


def emulated_bf16(runs: pd.DataFrame) -> list[str]:
    """Variants (groups) with amp_bf16 runs on a CPU whose ``env.cpu_native_bf16`` is false."""
    if PRECISION not in runs or "env.cpu_native_bf16" not in runs:
        return []
    on_cpu = runs["env.device_type"].fillna("cpu") == "cpu" if "env.device_type" in runs else True
    hit = runs[(runs[PRECISION] == "amp_bf16") & (runs["env.cpu_native_bf16"] == "false") & on_cpu]
    return list(dict.fromkeys(hit["group"]))


def _values(prov: pd.DataFrame, key: str) -> str:
    rows = prov[prov["key"] == key]
    if not len(rows):
        return UNKNOWN
    if len(rows) == 1:
        return str(rows["value"].iloc[0])
    return " / ".join(f"{r.value} ({r.runs} runs)" for r in rows.itertuples())


def header_lines(prov: pd.DataFrame, finished: bool = True) -> list[str]:
    """The provenance header: code, libraries, device, backend flags, normalisation."""
    if prov.empty and not finished:  # provenance is read from finished runs only
        return ["None: no run finished (the failed and skipped ones are listed at the end)."]
    if prov.empty:
        return ["No provenance recorded with these runs (they predate bench's `env.*` tags)."]
    v = lambda key: _values(prov, key)  # noqa: E731
    commit = v("env.git_commit")
    dirty = v("env.git_dirty")
    code = f"bench {v('env.bench_version')}, commit `{commit[:12] if len(commit) == 40 else commit}`"
    code += {"true": " (uncommitted changes)", "false": ""}.get(dirty, f" (dirty: {dirty})")
    diff = v("env.git_diff")
    if diff not in (UNKNOWN, "none"):
        code += f", working-tree diff (untracked files included) sha256 `{diff}`"
    cuda = (
        f"CUDA {v('env.cuda')}, cuDNN {v('env.cudnn')}, driver {v('env.cuda_driver')}"
        if (prov["key"] == "env.cuda").any()
        else "CUDA not used"
    )
    return [
        f"Code: {code}.",
        f"Libraries: Python {v('env.python')}, torch {v('env.torch')} (build {v('env.torch_build')}), "
        f"torchvision {v('env.torchvision')}, NumPy {v('env.numpy')}, SciPy {v('env.scipy')}, {cuda}, "
        f"timm {v('env.timm')}, MLflow {v('env.mlflow')}, Optuna {v('env.optuna')}.",
        f"System: {v('env.os')}; threads: torch intra-op {v('env.torch_threads')}, OMP_NUM_THREADS "
        f"{v('env.omp_num_threads')}, cores available {v('env.cpus_available')}.",
        f"Device: {v('env.device_name')} ({v('env.device_type')}); CPU {v('env.cpu_model')}, "
        f"flags {v('env.cpu_flags')}, native bf16 {v('env.cpu_native_bf16')}.",
        f"Backend flags: TF32 matmul {v('env.allow_tf32_matmul')}, TF32 cuDNN {v('env.allow_tf32_cudnn')}, "
        f"cudnn.benchmark {v('env.cudnn_benchmark')}, float32 matmul precision "
        f"{v('env.float32_matmul_precision')}.",
        f"Normalisation: {v(NORMALIZE)}.",
    ]
