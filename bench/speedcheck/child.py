"""``python -m bench.speedcheck.child``: one timing in a fresh process (no allocator, compile cache or
warmed-up thread pool carried over from another variant), printed as one JSON line."""

from __future__ import annotations

import argparse
import json
import sys

MARK = "BENCH_SPEED_RESULT "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.speedcheck.child")
    parser.add_argument("recipe")
    parser.add_argument("--group", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--overlay", action="append", default=[])
    parser.add_argument("--override", action="append", default=[])
    args = parser.parse_args(argv)
    from bench.engine.errors import VariantSkipped
    from bench.speedcheck.timing import time_steps
    from bench.validate.recipe import load_validated

    loaded = load_validated(args.recipe, args.override, args.overlay)
    variant = next(v for v in loaded.variants if v.group == args.group)
    try:
        out = {"status": "finished", **time_steps(variant, args.steps, args.warmup)}
    except VariantSkipped as exc:
        out = {"status": "skipped", "reason": str(exc)}
    print(MARK + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
