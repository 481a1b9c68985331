"""A run's identity includes the content of its inputs, not only the recipe text.

``run_key`` (bench/recipe/load.py) hashes the resolved config and the seed. A variant that
starts from ``model.weights`` names a *path*: re-pretraining rewrites that file, and without its
content in the key the downstream variants would stay "finished" on the old weights. The same
holds for the data behind ``data.root``. So before anything of a recipe trains, the runner folds
two fingerprints into every variant's key:

    weights   sha256 of the ``model.weights`` file (the whole content), cached by
              (path, size, mtime) in ``$BENCH_CACHE_DIR/fingerprints/`` so a rerun does not
              read the file again; "missing" when there is no such file (yet)
    data      the files the data source reads, by *content*: blake2b over every file's relative
              path and bytes under the data folder(s) (no mtimes, so a copy or a fresh
              extraction of the same files keeps the identity; adding, removing, renaming or
              editing a file changes it, even when its size stays the same). Each file's digest
              is cached by (size, mtime) in one cache file per folder, so a rerun only stats the
              files and rehashes those that changed. An archive (the CIFAR-10 ``.tar.gz``) or a
              single file by its sha256, cached as above
    code      sha256 of the source file of every user module the recipe names by import path
              (``model.name: mymodels:Net``, a loss, a data set; bench/components/user_code.py):
              editing ``mymodels.py`` retrains. Absent when the recipe names registry entries and
              library code only, so such recipes keep their run keys

The fingerprints are also recorded as tags on each run (``bench.input.weights``,
``bench.input.data``, ``bench.input.code``: which code produced the run). Hashing files needs no torch: this stays cheap and import-light.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from bench.components.user_code import add_import_paths, code_fingerprint
from bench.recipe.load import LoadedRecipe, Variant
from bench.recipe.matrix import stable_hash
from bench.util.fileio import atomic_write_text

WEIGHTS_TAG, DATA_TAG, CODE_TAG = "bench.input.weights", "bench.input.data", "bench.input.code"
CIFAR10_ARCHIVE = "cifar10-jpeg.tar.gz"


def _cache_root() -> Path:
    env = os.environ.get("BENCH_CACHE_DIR")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "bench") / "fingerprints"


def file_sha256(path: Path) -> str:
    """sha256 of ``path``'s content, cached by (absolute path, size, mtime_ns)."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    cache = _cache_root() / f"{hashlib.sha1(str(path).encode()).hexdigest()[:20]}.json"
    try:
        saved = json.loads(cache.read_text())
        if all(saved.get(k) == v for k, v in stamp.items()):
            return saved["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    try:
        atomic_write_text(cache, json.dumps({**stamp, "sha256": digest}))
    except OSError:
        pass  # a read-only cache folder: hash again next time
    return digest


def _hash_file(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def folder_content(folder: Path) -> str:
    """blake2b of every file's relative path and content under ``folder`` (sorted). Per-file
    digests are cached by (size, mtime_ns) in ``fingerprints/folders/``: unchanged files are
    only stat'ed, not read again."""
    folder = Path(folder).resolve()
    cache = _cache_root() / "folders" / f"{hashlib.sha1(str(folder).encode()).hexdigest()[:20]}.json"
    try:
        saved = json.loads(cache.read_text())
        known = saved["files"] if saved.get("folder") == str(folder) else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        known = {}
    files: dict[str, list] = {}
    total = hashlib.blake2b(digest_size=20)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = os.path.relpath(dirpath, folder)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
                stamp = [st.st_size, st.st_mtime_ns]
                old = known.get(f"{rel}/{name}")
                digest = old[2] if isinstance(old, list) and old[:2] == stamp else _hash_file(path)
            except OSError:
                continue
            files[f"{rel}/{name}"] = [*stamp, digest]
            total.update(f"{rel}/{name}\0{digest}\n".encode())
    if files != known:
        try:
            atomic_write_text(cache, json.dumps({"folder": str(folder), "files": files}))
        except OSError:
            pass  # a read-only cache folder: hash again next time
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
    root = Path(data_cfg.root or os.environ.get("BENCH_DATA_DIR") or "data").expanduser()
    parts = [path_fingerprint(p) for p in data_sources(data_cfg.name, root)]
    return parts[0] if len(parts) == 1 else "sha256:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def weights_fingerprint(weights: str | None) -> str | None:
    if not weights:
        return None
    env = {"BENCH_RESULTS_DIR": "results", **os.environ}  # as bench.components.models.weights reads it
    text = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), weights)
    path = Path(text).expanduser()
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
    code = code_fingerprint(body, memo)
    if code:
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
