"""``bench run RECIPE... [key=value ...]``"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from bench.commands.common import add_executor_arguments, add_recipe_arguments, ray_options
from bench.execution.order import DEFAULT_ORDER, ORDERS, order_seed, run_order
from bench.measure.hardware import (
    EMULATED_BF16_NOTE,
    cpu_has_native_bf16,
    cuda_available,
    emulated_bf16_policy,
    skipped_for_device,
    skipped_names,
)

EXIT_CODES = """exit codes:
  0    every variant finished (or was already finished)
  1    a variant failed (its reason is in runs.csv and MLflow), or runs.csv could not be written
  2    a bad recipe, data set or weights file: nothing was recorded
  3    the MLflow tracking store is unusable (cannot be opened, is damaged or locked, or failed
       to record a variant), or the results folder was deleted or moved while the command ran
  4    busy: another live bench run owns one of the recipes (one command per recipe; more GPUs or
       machines: --executor ray); nothing was changed: run the command again once it has ended
  130  interrupted (Ctrl-C), 143 terminated (SIGTERM): run the same command again to resume
"""


def configure(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser, "+")
    parser.add_argument("--dry-run", action="store_true", help="print the expanded variants and exit")
    parser.add_argument(
        "--show-changes", action="store_true",
        help="with --dry-run: list every config key each variant changes against the baseline, one per line "
        "with its old and new value (without it: one line per variant, cut to the terminal's width)",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="re-run variants that already finished")
    parser.add_argument(
        "--max-attempts", type=positive_int, default=3, metavar="N",
        help="give a variant up once its process died N times (OOM killer, segfault, CUDA fatal error), "
        "recording why; default 3",
    )  # fmt: skip
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXIT_CODES
    parser.add_argument(
        "--emulated-bf16", choices=("skip", "run"), default=None,
        help="amp_bf16 variants on a CPU without native bf16 (no avx512_bf16/amx_bf16; 20-40x slower): skip "
        "(default; recorded as skipped with the reason, and trained when the same command runs on a machine "
        "with native bf16 or a GPU) or run them emulated; default from $BENCH_EMULATED_BF16, else skip",
    )  # fmt: skip
    parser.add_argument(
        "--order", choices=ORDERS, default=DEFAULT_ORDER,
        help="run order, part of the design: seed-blocks (default) runs one block per seed with the variants "
        "shuffled inside it, so a change of machine load hits every variant alike; random shuffles all; "
        "variant runs every seed of one variant, then the next (load drift then reads as an effect)",
    )  # fmt: skip
    parser.add_argument(
        "--order-seed", type=int, default=None, metavar="N",
        help="seed of the shuffle (default: derived from the recipe name; recorded as the parent run's "
        "tag bench.order_seed); the same seed gives the same order, so a rerun resumes in order",
    )  # fmt: skip
    parser.add_argument(
        "--until-decided", action="store_true",
        help="after the recipe's seeds, add one seed per round to the variants (and the baseline) whose "
        "comparison with the baseline is undecided, until each is better, worse or equivalent (group-sequential: "
        "a look per seed count, Lan-DeMets alpha-spending, Bonferroni over the variants) or has --max-seeds "
        "seeds; rerun the same command to continue",
    )  # fmt: skip
    parser.add_argument("--max-seeds", type=positive_int, default=12, metavar="N",
                        help="with --until-decided: at most N seeds per variant (default 12, as bench calibrate); the looks are planned "
                        "up to N, so keep it when rerunning")  # fmt: skip
    parser.add_argument("--min-effect", type=positive_float, default=None, metavar="D",
                        help="with --until-decided: the equivalence margin in accuracy units "
                        "(default: the recipe's report.min_effect)")  # fmt: skip
    parser.add_argument(
        "--record-skips", action="store_true",
        help="record the runs as skipped even when every run of a recipe would be skipped on this machine "
        "for lack of a device (amp_fp16 or train.device: cuda without CUDA); without it bench run exits 2",
    )  # fmt: skip
    add_executor_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from bench.commands import api

    # Validate every recipe and every variant before anything trains: first without torch
    # (bench.components.catalog), all a dry run does, so most mistakes exit 2 at once; then the
    # full check (values through torch, models on `meta`) while the forkserver imports torch,
    # MLflow and timm for the variants on the other core (~5-10 s of a tiny study's start).
    loaded = [api.load_recipe(path, args.overrides, args.overlay, full=False) for path in args.recipe]
    on_ray = ray_options(args)
    if not args.dry_run:
        from bench.execution.owner import looks_busy

        # not for a command that will exit 4 (busy): its server would compete with the owner's runs
        if on_ray is None and not any(looks_busy(args.results_dir, r.name) for r in loaded):
            from bench.execution.local import LocalExecutor

            LocalExecutor.warm()
        from bench.validate.recipe import validate_recipe

        for recipe in loaded:
            validate_recipe(recipe, full=True, warnings=False)
    api.use_emulated_bf16(args.emulated_bf16)  # a bad $BENCH_EMULATED_BF16 exits 2 before anything runs
    if args.dry_run:
        from bench.execution.estimate import estimate_line
        from bench.execution.identity import with_input_fingerprints

        for i, recipe in enumerate(loaded):
            # the run keys a run would record now (a weights file an earlier recipe writes: "missing")
            keyed = with_input_fingerprints(recipe)[0]
            print(variants_table(keyed, args.order, args.order_seed))
            print(changes_text(recipe, full=args.show_changes))
            missing = weights_notes(recipe, [r.name for r in loaded[:i]], args.results_dir)
            for line in dict.fromkeys([*recipe.notes, *missing]):
                print(f"note: {line}")
            for note in (bf16_note(recipe), device_note(recipe, args.record_skips or on_ray is not None)):
                if note:
                    print(f"note: {note}")
            # runs this machine skips at once take no time (on Ray, GPU nodes may train them)
            skips = [] if on_ray is not None else skipped_names(recipe.variants, cuda_available(exact=False))
            print(estimate_line(keyed, args.results_dir, force=args.force, device_skips=skips))
        return 0
    from bench.errors import Terminated
    from bench.execution.owner import RecipeBusy

    executor = until = None  # the runner's default: local processes, the recipe's seeds
    if on_ray is not None:
        from bench.execution.ray_executor import RayExecutor

        executor = RayExecutor(on_ray)
    if args.until_decided:
        from bench.execution.until_decided import UntilDecided

        until = UntilDecided(max_seeds=args.max_seeds, min_effect=args.min_effect)
    try:
        # Data sets and weights files load per recipe before anything of it is recorded (an
        # earlier recipe of the same command may produce the weights a later one starts from).
        frame = api.run(
            loaded, results_dir=args.results_dir, tracking_uri=args.tracking_uri, force=args.force,
            executor=executor, max_attempts=args.max_attempts, order=args.order,
            order_seed=args.order_seed, until_decided=until, record_skips=args.record_skips,
        )  # fmt: skip
    except RecipeBusy as exc:  # not an error of this command: say it as it is
        print(exc, file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print(
            "terminated (SIGTERM): finished variants are recorded; run the same command again to resume",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM
    return frame.attrs.get("exit_code", 0)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def bf16_note(recipe) -> str | None:
    """Say so when amp_bf16 variants will run emulated on this CPU (``--emulated-bf16 run``;
    skipped ones are in the device note). Checked without torch."""
    bf16 = [
        v for v in recipe.variants if v.body.train.precision == "amp_bf16" and v.body.train.device != "cuda"
    ]
    if bf16 and not cpu_has_native_bf16() and emulated_bf16_policy() == "run":
        return f"{EMULATED_BF16_NOTE} ({len(bf16)} run(s), trained emulated: --emulated-bf16 run)"
    return None


def weights_notes(recipe, earlier: list[str], results_dir: str) -> list[str]:
    """A ``model.weights`` file that is not there, and that no earlier recipe of this command writes:
    the dry run passed and `bench run` then refused the recipe (e.g. smoke.yaml before smoke_pretrain)."""
    from bench.util.fileio import expand_path

    notes = []
    for weights in dict.fromkeys(v.body.model.weights for v in recipe.variants if v.body.model.weights):
        path = expand_path(weights).absolute()  # as the model will load it
        if path.is_file():
            continue
        if any(path.is_relative_to(Path(results_dir).absolute() / name) for name in earlier):
            continue  # an earlier recipe on this command line writes it
        notes.append(
            f"model.weights: {path} does not exist yet: bench run stops at it (exit 2, nothing recorded); "
            "run the recipe that writes it first (results/<recipe>/weights/<variant>.pt), or name that "
            "recipe before this one on the same command line"
        )
    return notes


def device_note(recipe, record_skips: bool) -> str | None:
    """Runs this machine would skip for lack of a device (guessed without torch), and whether
    ``bench run`` refuses the recipe for it."""
    from bench.validate.preflight import all_skipped_message

    skipped = skipped_for_device(recipe.variants, cuda_available(exact=False))
    message = all_skipped_message(recipe, skipped)
    if message and not record_skips:
        return f"bench run will refuse this recipe (exit 2): {message}"
    if skipped:
        return "; ".join(
            f"{len(names)} run(s) would be recorded as skipped: {why}" for why, names in skipped.items()
        )
    return None


def variants_table(recipe, order: str = DEFAULT_ORDER, seed: int | None = None) -> str:
    """The expanded variants as a text table (no pandas: a dry run stays fast), with every axis's
    value for every variant (an ``include`` entry's variant shows the base values it keeps), in the
    order ``bench run`` runs them (``position`` is the runs' tag ``bench.position``)."""
    seed = order_seed(recipe.name) if seed is None else seed
    ordered = run_order(recipe.variants, order, seed)
    rows = [{"position": i, "variant": v.name, "seed": v.seed, "run_key": v.run_key, **v.axis_values}
            for i, v in enumerate(ordered, 1)]  # fmt: skip
    header = (
        f"{recipe.source}: {recipe.name}, {len(recipe.variants)} runs ({len(recipe.recipe.seeds)} seed(s)), "
        f"run order {order} (order seed {seed})"
    )
    return header + "\n" + text_table(rows)


def text_table(rows: list[dict]) -> str:
    """Columns right-aligned to their widest cell, like ``DataFrame.to_string(index=False)``."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [[c.rjust(w) for c, w in zip(columns, widths)]]
    lines += [[cell.rjust(w) for cell, w in zip(r, widths)] for r in cells]
    return "\n".join(" ".join(line) for line in lines)


def changes_text(recipe, full: bool = False) -> str:
    """Every resolved config key each variant (once per group) changes against the baseline, and
    which axis values are bundles: a short label can stand for many changed keys. ``full``: one key
    per line with both values; else one line per variant, cut to a terminal's width (output to a file
    or a pipe is not cut, so it can be searched)."""
    import shutil

    from bench.recipe.changes import change_text, compact, keys_text, recipe_changes

    width = max(100, shutil.get_terminal_size().columns) if not full and sys.stdout.isatty() else None
    found = recipe_changes(recipe)
    hint = "" if full else "; --show-changes: every key with both values"
    lines = [f"changes against the baseline {found.baseline} (resolved configs{hint}):"]
    if found.note:
        lines.append(f"  note: {found.note}")
    pad = max(len(g) for g in found.variants)
    for group, changes in found.variants.items():
        head = f"  {group.ljust(pad)}  {keys_text(len(changes))}"
        if group == found.baseline:
            lines.append(f"  {group.ljust(pad)}  baseline")
        elif full:
            lines.append(head + ":")
            lines += [f"      {change_text(k, old, new)}" for k, (old, new) in changes.items()]
        else:
            text = compact(changes, None if width is None else width - len(head) - 2, "fit")
            lines.append(f"{head}: {text or '(the same resolved config)'}")
    if found.axes:
        lines.append("axis values against the baseline's value on their axis "
                     "(bundle: changes keys beyond the one its label names):")  # fmt: skip
        pad = max(len(f"{a.axis}={a.value}") for a in found.axes)
        for a in found.axes:
            head = f"  {f'{a.axis}={a.value}'.ljust(pad)}  "
            if a.changes is None:
                lines.append(head + "no pair of variants differs on this axis alone")
                continue
            text = head + keys_text(a.n_keys)
            if a.bundle:
                room = None if width is None else width - len(text) - 15
                text += "  bundle, also: " + compact(a.beyond, room, "values" if full else "names")
            lines.append(text)
    return "\n".join(lines)
