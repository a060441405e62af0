"""The YAML posttrain reads, in bounded time and memory, with errors that say where.

PyYAML alone lets a pipeline file hang or crash the checks that read it:
- aliases share one node, so nine levels of nine-fold `*alias` are 400 million values once anything walks them
  (validation, an error message): the expanded size is counted first, and a file past MAX_VALUES is refused;
- 20,000 nested brackets exhaust the recursion limit inside the parser: refused as too deep (MAX_DEPTH);
- invalid UTF-8 raised UnicodeDecodeError: an error naming the line and byte offset;
- a key given twice kept the last value without a word: an error naming the key and both lines.
PyYAML also reads `1e-5` as a string (YAML 1.1 wants a dot); users mean a float.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from posttrain.errors import ConfigError, cut

MAX_VALUES = 100_000  # a pipeline holds hundreds of values; this is aliases multiplying
MAX_DEPTH = 100


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<: *base` then a key of its own is how YAML overrides a merged value
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise DuplicateKey(key_node.value, seen[key_node.value], line)
                seen[key_node.value] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)$|^[-+]?(?:\d[\d_]*)?\.\d+$|^[-+]?\d[\d_]*\.$"),
    list("-+0123456789."),
)


class DuplicateKey(Exception):
    def __init__(self, key: str, first: int, second: int):
        super().__init__(f"key {cut(key)!r} is given twice, on lines {first} and {second}; keep one")
        self.line = second


def parse_yaml(text: str, where: str = "") -> Any:
    """The value of a YAML text; ConfigError (prefixed with `where`, a file name) for anything it cannot be."""
    prefix = f"{where}: " if where else ""
    try:
        value = yaml.load(text, Loader=_Loader)
    except DuplicateKey as e:
        raise ConfigError(f"{where}:{e.line}: {e}" if where else str(e)) from None
    except RecursionError:
        raise ConfigError(f"{prefix}invalid YAML: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}: " if mark and where else prefix
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or e
        raise ConfigError(f"{at}invalid YAML: {problem}") from None
    _check_size(value, prefix)
    return value


def read_yaml_file(path: Path) -> Any:
    """A YAML file's value; invalid UTF-8 is an error naming its line and byte offset."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}:{line}: invalid UTF-8 at byte offset {e.start} (byte 0x{data[e.start]:02x}); "
                          "save the file as UTF-8") from None
    return parse_yaml(text.removeprefix("\ufeff"), str(path))


def _check_size(value, prefix: str) -> None:
    """Count the values as validation will see them, aliases expanded, without expanding them."""
    sizes: dict[int, int] = {}
    depth_of: dict[int, int] = {}
    active: set[int] = set()

    def walk(node, level: int) -> tuple[int, int]:
        if not isinstance(node, (dict, list)):
            return 1, 0
        key = id(node)
        if key in active:
            raise ConfigError(f"{prefix}invalid YAML: an alias refers to the value that holds it")
        if key not in sizes:
            if level >= MAX_DEPTH:
                raise ConfigError(f"{prefix}invalid YAML: nested too deeply (at most {MAX_DEPTH} levels)")
            active.add(key)
            size, depth = 1 + (len(node) if isinstance(node, dict) else 0), 0
            for child in (node.values() if isinstance(node, dict) else node):
                child_size, child_depth = walk(child, level + 1)
                size, depth = size + child_size, max(depth, child_depth + 1)
                if size > MAX_VALUES:
                    raise ConfigError(f"{prefix}invalid YAML: more than {MAX_VALUES:,} values once its aliases are "
                                      "expanded (an alias of an alias multiplies them)")
            active.discard(key)
            sizes[key], depth_of[key] = size, depth
        if level + depth_of[key] > MAX_DEPTH:
            raise ConfigError(f"{prefix}invalid YAML: nested too deeply (at most {MAX_DEPTH} levels)")
        return sizes[key], depth_of[key]

    walk(value, 0)

