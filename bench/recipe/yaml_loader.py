"""A strict YAML loader for recipes.

Plain ``yaml.safe_load`` has three traps for configs: it reads ``1e-3`` as a string (YAML 1.1
wants a dot), it silently keeps the last of two duplicate keys, and a small "billion laughs"
document of nested aliases expands to gigabytes. This loader fixes all three; Python tags
(``!!python/...``) are refused as by SafeLoader.

Merge keys work as in YAML (``<<: *base``, or ``<<: [*a, *b]``): a shallow merge where the
mapping's own keys win over merged ones, and the earlier of several merged mappings wins. Only the
mapping's own keys are checked for duplicates (each merged mapping is checked where it is written).
Keys are compared as YAML compares them, by tag and value: ``1`` and ``true`` are different keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bench.errors import RecipeError

MAX_DOCUMENT_BYTES = 1_000_000
MAX_ALIASES = 100
MAX_EXPANDED_NODES = 200_000  # values once every alias is expanded (what validation walks)

# YAML 1.2-style floats: 1e-3, 5E4, .5, 1.0e+3, inf, nan.
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats, duplicate-key errors and an alias budget."""

    aliases_seen = 0  # per document: each load makes a new loader

    def compose_node(self, parent, index):  # noqa: D401 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen += 1
            if self.aliases_seen > MAX_ALIASES:
                raise _error(f"more than {MAX_ALIASES} aliases (possible alias bomb)", self.peek_event())
        return super().compose_node(parent, index)

    def get_single_node(self):
        """The document's node graph, refused when its aliases expand it beyond
        ``MAX_EXPANDED_NODES`` (few aliases nested 9 deep make 10^9 values) or refer to themselves."""
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            _check_own_keys(self, node)
        return super().construct_mapping(node, deep=deep)  # merges ``<<`` keys, then constructs


def _check_own_keys(loader: StrictLoader, node: yaml.MappingNode) -> None:
    """Refuse a key written twice in one mapping, and two YAML keys that Python would fold into
    one (``1`` and ``true``: equal in Python, so one value would be lost silently)."""
    seen: dict[Any, tuple[str, str, int]] = {}  # loaded key -> its tag, text and line
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # SafeLoader raises its own error for unhashable keys
        if key not in seen:
            seen[key] = (key_node.tag, key_node.value, key_node.start_mark.line)
            continue
        tag, first, line = seen[key]
        if tag == key_node.tag:
            raise _error(f"duplicate key '{key}' (first at line {line + 1})", key_node)
        raise _error(
            f"keys '{first}' (line {line + 1}) and '{key_node.value}' are different in YAML "
            "but the same key once loaded; quote them to make them strings",
            key_node,
        )


def _expanded_size(node, sizes: dict[int, int], active: set[int]) -> int:
    """Number of nodes ``node`` stands for with every alias expanded (memoised per node)."""
    key = id(node)
    if key not in sizes:
        if key in active:
            raise _error("an alias refers to the collection that contains it (recursive alias)", node)
        active.add(key)
        children = node.value if isinstance(node, yaml.SequenceNode) else []
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        sizes[key] = 1 + sum(_expanded_size(child, sizes, active) for child in children)
        active.discard(key)
        if sizes[key] > MAX_EXPANDED_NODES:
            raise _error(
                f"the document expands to more than {MAX_EXPANDED_NODES} values through its aliases "
                "(possible alias bomb)",
                node,
            )
    return sizes[key]


def _error(problem: str, at: Any) -> yaml.constructor.ConstructorError:
    """A YAML error at a node or event, reported with its line like PyYAML's own."""
    return yaml.constructor.ConstructorError(None, None, problem, at.start_mark)


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))
# Remove PyYAML's own float resolver entries so ours wins for every first character.
for _ch, _resolvers in list(StrictLoader.yaml_implicit_resolvers.items()):
    StrictLoader.yaml_implicit_resolvers[_ch] = [
        (tag, rx) for tag, rx in _resolvers if tag != "tag:yaml.org,2002:float" or rx is _FLOAT_RE
    ]


def load_yaml_text(text: str, source: str = "<string>") -> Any:
    """Parse one YAML document strictly; errors name the source and the line."""
    if len(text.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise RecipeError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes", source=source)
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}" if mark else None
        problem = exc.problem or str(exc)
        if "python/" in str(exc):
            problem = f"Python tags are not allowed in recipes ({exc.problem})"
        raise RecipeError(problem, source=source, key=line) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"invalid YAML: {exc}", source=source) from None
    except RecursionError:
        raise RecipeError("the document is nested too deeply", source=source) from None


def load_yaml_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read file: {exc}", source=str(path)) from None
    return load_yaml_text(text, source=str(path))


def parse_scalar(text: str) -> Any:
    """Parse a CLI override value (``train.epochs=2``) with the same rules as recipe files."""
    return "" if text == "" else load_yaml_text(text, source="<override>")
