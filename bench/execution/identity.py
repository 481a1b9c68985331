"""A run's identity includes the content of its inputs, not only the recipe text.

``run_key`` (bench/recipe/load.py) hashes the resolved config and the seed, but ``model.weights``
and ``data.root`` name *paths*: re-pretraining rewrites the weights file, and without its content
in the key the downstream variants would stay "finished" on the old weights. So before anything of
a recipe trains, the runner folds its inputs' fingerprints into every variant's key and records
them as tags (which inputs and code produced the run):

    weights   ``bench.input.weights``: sha256 of the ``model.weights`` file; "missing" when there is
              no such file (yet)
    data      ``bench.input.data``: the files the data source reads, by *content*: blake2b over
              every file's relative path and bytes (no mtimes, so a copy or a fresh extraction
              keeps the identity; adding, removing, renaming or editing a file changes it, even at
              the same size). An archive (the CIFAR-10 ``.tar.gz``) or a single file by its sha256
    code      ``bench.input.code``: sha256 of every user module the recipe names by import path
              (``model.name: mymodels:Net``; bench/components/user_code.py): editing ``mymodels.py``
              retrains. Absent for registry entries and library code, so such recipes keep their keys

Digests are cached by (size, mtime) in ``$BENCH_CACHE_DIR/fingerprints/``: a rerun only stats the
files and rehashes those that changed. No torch: this stays cheap and import-light.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from bench.components.user_code import add_import_paths, code_fingerprint
from bench.recipe.load import LoadedRecipe, Variant
from bench.recipe.matrix import stable_hash
from bench.util.dataroot import CIFAR10_ARCHIVE, data_root
from bench.util.fileio import atomic_write_text, expand_path

WEIGHTS_TAG, DATA_TAG, CODE_TAG = "bench.input.weights", "bench.input.data", "bench.input.code"


def _cache(path: Path, *sub: str) -> tuple[Path, Any]:
    """The cache file of ``path`` and what it holds (None when absent or unreadable)."""
    env = os.environ.get("BENCH_CACHE_DIR")
    root = (Path(env).expanduser() if env else Path.home() / ".cache" / "bench") / "fingerprints"
    cache = root.joinpath(*sub, f"{hashlib.sha1(str(path).encode()).hexdigest()[:20]}.json")
    try:
        return cache, json.loads(cache.read_text())
    except (OSError, ValueError):
        return cache, None


def _save(cache: Path, data: dict) -> None:
    try:
        atomic_write_text(cache, json.dumps(data))
    except OSError:
        pass  # a read-only cache folder: hash again next time


def file_sha256(path: Path) -> str:
    """sha256 of ``path``'s content, cached by (absolute path, size, mtime_ns)."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    cache, saved = _cache(path)
    if isinstance(saved, dict) and all(saved.get(k) == v for k, v in stamp.items()):
        return saved["sha256"]
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    _save(cache, {**stamp, "sha256": digest})
    return digest


def folder_content(folder: Path) -> str:
    """blake2b of every file's relative path and content under ``folder`` (sorted), each file's
    digest cached by (size, mtime_ns) in ``fingerprints/folders/``."""
    folder = Path(folder).resolve()
    cache, saved = _cache(folder, "folders")
    known = saved.get("files", {}) if isinstance(saved, dict) and saved.get("folder") == str(folder) else {}
    files: dict[str, list] = {}
    total = hashlib.blake2b(digest_size=20)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = os.path.relpath(dirpath, folder)
        for name in sorted(filenames):
            path, key = os.path.join(dirpath, name), f"{rel}/{name}"
            try:
                st = os.stat(path)
                stamp = [st.st_size, st.st_mtime_ns]
                old = known.get(key)
                if isinstance(old, list) and old[:2] == stamp:
                    digest = old[2]
                else:
                    with open(path, "rb") as fh:
                        digest = hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
            except OSError:
                continue
            files[key] = [*stamp, digest]
            total.update(f"{key}\0{digest}\n".encode())
    if files != known:
        _save(cache, {"folder": str(folder), "files": files})
    return total.hexdigest()


def data_sources(name: str, root: Path) -> list[Path]:
    """What the data source ``name`` reads under ``root`` (bench/data/sources.py's search order),
    so that unrelated files beside the data set do not change the identity."""
    if name == "cifar10":
        if (root / "cifar-10-batches-py").is_dir():
            return [root / "cifar-10-batches-py"]
        for folder in (root, root / "cifar10"):
            if (folder / "train").is_dir() and (folder / "test").is_dir():
                return [folder / "train", folder / "test"]
        return [root / CIFAR10_ARCHIVE]
    if name == "imagefolder" and (root / "train").is_dir():
        test = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
        return [root / "train", *([test] if test else [])]
    return [root]


def path_fingerprint(path: Path) -> str:
    if path.is_file():
        return "sha256:" + file_sha256(path)
    if path.is_dir():
        return "content:" + folder_content(path)
    return "missing"


def data_fingerprint(data_cfg: Any) -> str:
    root = data_root(data_cfg.root)
    parts = [path_fingerprint(p) for p in data_sources(data_cfg.name, root)]
    return parts[0] if len(parts) == 1 else "sha256:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def weights_fingerprint(weights: str | None) -> str | None:
    if not weights:
        return None
    path = expand_path(weights)  # the file the model will load
    return "sha256:" + file_sha256(path) if path.is_file() else "missing"


def input_tags(variant: Variant, memo: dict[str, str]) -> dict[str, str]:
    """The fingerprints of ``variant``'s inputs, as tags (each distinct input hashed once)."""
    body = variant.body
    data_key = "data:" + body.data.model_dump_json()
    if data_key not in memo:
        memo[data_key] = data_fingerprint(body.data)
    tags = {DATA_TAG: memo[data_key]}
    if body.model.weights:
        key = "weights:" + body.model.weights
        if key not in memo:
            memo[key] = weights_fingerprint(body.model.weights)
        tags[WEIGHTS_TAG] = memo[key]
    if code := code_fingerprint(body, memo):
        tags[CODE_TAG] = code
    return tags


def with_input_fingerprints(loaded: LoadedRecipe) -> tuple[LoadedRecipe, dict[str, dict[str, str]]]:
    """``loaded`` with every variant's ``run_key`` extended by its inputs' fingerprints, and the
    fingerprints per new run key (for tags). Call once per recipe, right before it runs: an
    earlier recipe of the same command may have just written the weights this one starts from."""
    add_import_paths(loaded.source)  # user modules beside the recipe, also for unvalidated loads (bench ui)
    memo: dict[str, str] = {}
    variants, inputs = [], {}
    for variant in loaded.variants:
        tags = input_tags(variant, memo)
        key = stable_hash({"config_key": variant.run_key, "inputs": tags}, 16)
        variants.append(dataclasses.replace(variant, run_key=key))
        inputs[key] = tags
    return dataclasses.replace(loaded, variants=variants), inputs
