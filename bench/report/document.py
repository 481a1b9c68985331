"""A report as a list of blocks (headings, paragraphs, lists, tables, images), written once and
rendered twice: Markdown with the PNGs beside it, and one self-contained HTML file with the PNGs
inline as base64, so the report can be mailed or opened offline without its folder."""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Doc:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", level, text))

    def para(self, text: str) -> None:
        self.blocks.append(("para", text))

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("bullets", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def image(self, title: str, path: Path) -> None:
        self.blocks.append(("image", title, Path(path)))


def to_markdown(doc: Doc, relative_to: Path) -> str:
    out = [f"# {doc.title}", ""]
    for block in doc.blocks:
        kind = block[0]
        if kind == "heading":
            out += ["#" * block[1] + " " + block[2], ""]
        elif kind == "para":
            out += [block[1], ""]
        elif kind == "bullets":
            out += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            out += [md_table(block[1], block[2]), ""]
        elif kind == "image":
            # relative to the markdown file, wherever the command ran (results dirs are often relative)
            rel = Path(os.path.relpath(Path(block[2]).resolve(), Path(relative_to).resolve()))
            out += [f"![{block[1]}]({rel.as_posix()})", ""]
    return "\n".join(out).rstrip() + "\n"


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def inline(text: object) -> str:
    """Escape for HTML, then the Markdown the report uses inline: `code` and **bold**."""
    s = html.escape(str(text))
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2} tr:nth-child(even) td{background:#fafafa}
code{background:#f4f4f4;padding:0 .2em;border-radius:3px;font-size:.9em}
img{max-width:100%;border:1px solid #eee} h1{font-size:1.6em} h2{border-bottom:1px solid #ddd}
.warn{color:#8a4b00}
"""


def to_html(doc: Doc) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{inline(doc.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{inline(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        kind = block[0]
        if kind == "heading":
            out.append(f"<h{block[1]}>{inline(block[2])}</h{block[1]}>")
        elif kind == "para":
            cls = ' class="warn"' if str(block[1]).startswith("**Warning") else ""
            out.append(f"<p{cls}>{inline(block[1])}</p>")
        elif kind == "bullets":
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{inline(h)}</th>" for h in block[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{inline(v)}</td>" for v in row) + "</tr>" for row in block[2]
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "image":
            data = base64.b64encode(block[2].read_bytes()).decode("ascii")
            out.append(
                f'<figure><img alt="{html.escape(block[1])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{inline(block[1])}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
