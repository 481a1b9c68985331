"""Code lines per package, as issue 22's ~9,000-line target counts them: lines holding a token that
is not a comment or a docstring (blank lines, comments and docstrings are free, so writing "why"
never costs against the target).

    python scripts/code_lines.py            # bench/ and each of its packages
    python scripts/code_lines.py bench/report --files
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from collections import Counter
from pathlib import Path

NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def code_lines(path: Path) -> int:
    source = path.read_text()
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    for node in ast.walk(ast.parse(source)):
        first = node.body[0] if isinstance(node, DOCUMENTED) and node.body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            lines.difference_update(range(first.lineno, first.end_lineno + 1))
    return len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default="bench")
    parser.add_argument("--files", action="store_true", help="one line per module")
    args = parser.parse_args()
    root = Path(args.root)
    per_file = {path: code_lines(path) for path in sorted(root.rglob("*.py"))}
    per_package: Counter[str] = Counter()
    for path, count in per_file.items():
        parts = path.relative_to(root).parts
        per_package[parts[0] if len(parts) > 1 else "(top level)"] += count
    print(f"{sum(per_file.values()):6d}  {root}")
    for name, count in per_package.most_common():
        print(f"{count:6d}    {name}")
    if args.files:
        for path, count in sorted(per_file.items(), key=lambda item: -item[1]):
            print(f"{count:6d}      {path}")


if __name__ == "__main__":
    main()
