"""Two studies side by side (e.g. the CPU smoke here and a GPU study run elsewhere): the same
variant names matched across studies, each study's device and libraries shown, so a speed-up is
read with the hardware that produced it. A study comes from MLflow (a recipe) or from the
``report/`` folder an earlier ``bench report`` wrote (a results folder copied from another machine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.report.document import Doc

MEMORY_KEY = "report.memory_key"  # a provenance.csv row: which memory measure the study's figures are


@dataclass
class Study:
    name: str
    source: str  # where it was read from, for the reader
    variants: pd.DataFrame  # tables.Tables.variants
    provenance: pd.DataFrame  # key, value, runs


def from_results_dir(path: str | Path) -> Study:
    """A study from ``<results>/<recipe>/report/{variants,provenance}.csv``."""
    path = Path(path)
    folder = path / "report" if (path / "report" / "variants.csv").exists() else path
    variants = folder / "variants.csv"
    if not variants.is_file():
        raise BenchError(
            f"--compare {path}: no report/variants.csv there; give a recipe file, or a results folder "
            "(results/<recipe>) in which `bench report` has run"
        )
    prov_path = folder / "provenance.csv"
    prov = (
        pd.read_csv(prov_path, dtype=str)
        if prov_path.is_file()
        else pd.DataFrame(columns=["key", "value", "runs"])
    )
    name = (folder.parent if folder.name == "report" else folder).name
    return Study(name, str(path), pd.read_csv(variants), prov)


def tag(study: Study, key: str) -> str:
    values = study.provenance.loc[study.provenance["key"] == key, "value"].astype(str).tolist()
    return " / ".join(values) if values else "n/a"


def side_by_side(a: Study, b: Study) -> pd.DataFrame:
    """One row per variant name in either study (a's order first): seeds, test accuracy, median
    throughput and memory of each, with ``acc_diff`` = b − a and the ratios b / a."""
    cols = {"seeds": "seeds", "acc_mean": "acc", "train_img_s_median": "img_s", "memory_mb_mean": "memory_mb"}

    def pick(s: Study, suffix: str) -> pd.DataFrame:
        v = s.variants.reindex(columns=["variant", *cols])  # a column the study lacks: NaN
        return v.rename(columns={c: f"{short}_{suffix}" for c, short in cols.items()})

    merged = pick(a, "a").merge(pick(b, "b"), on="variant", how="outer", sort=False)
    order = list(dict.fromkeys([*a.variants["variant"], *b.variants["variant"]]))
    merged = merged.set_index("variant").loc[order].reset_index()
    merged["acc_diff"] = merged["acc_b"] - merged["acc_a"]
    merged["img_s_ratio"] = merged["img_s_b"] / merged["img_s_a"]
    merged["memory_ratio"] = merged["memory_mb_b"] / merged["memory_mb_a"]
    return merged


def matched(table: pd.DataFrame) -> int:
    """How many variant names a side-by-side table finds in both studies."""
    return int((table["seeds_a"].notna() & table["seeds_b"].notna()).sum())


def blocks(a: Study, b: Study, table: pd.DataFrame) -> list[tuple]:
    """The report section for one comparison."""
    from bench.report.markdown import num, ratio, signed

    doc = Doc("")
    doc.heading(f"Side by side: `{a.name}` and `{b.name}`")
    doc.table(
        ["study", "read from", "device", "device type", "torch", "CUDA", "commit", "memory measure"],
        [[f"`{s.name}`", f"`{s.source}`", tag(s, "env.device_name"), tag(s, "env.device_type"),
          tag(s, "env.torch"), tag(s, "env.cuda"), tag(s, "env.git_commit")[:12], _memory(s)] for s in (a, b)],
    )  # fmt: skip
    doc.para(
        f"Variants matched by name. Δ acc = `{b.name}` − `{a.name}` (seed means); ratios are "
        f"`{b.name}` / `{a.name}` of median train throughput and of mean memory. Different devices "
        "make speed and memory ratios hardware comparisons, not trick comparisons."
        + ("" if matched(table) else " **No variant name is in both studies: nothing is compared.**")
    )
    rows = [
        [f"`{r.variant}`", num(r.seeds_a, 0), num(r.acc_a), num(r.seeds_b, 0), num(r.acc_b), signed(r.acc_diff),
         num(r.img_s_a, 0), num(r.img_s_b, 0), ratio(r.img_s_ratio), num(r.memory_mb_a, 0),
         num(r.memory_mb_b, 0), ratio(r.memory_ratio)]
        for r in table.itertuples()
    ]  # fmt: skip
    doc.table(
        ["variant", f"seeds {a.name}", f"test acc {a.name}", f"seeds {b.name}", f"test acc {b.name}", "Δ acc",
         f"img/s {a.name}", f"img/s {b.name}", "speed ratio", f"memory MB {a.name}", f"memory MB {b.name}",
         "memory ratio"],
        rows,
    )  # fmt: skip
    return doc.blocks


def _memory(s: Study) -> str:
    from bench.report.plots import memory_label

    key = tag(s, MEMORY_KEY)
    return memory_label(None if key == "n/a" else key)
