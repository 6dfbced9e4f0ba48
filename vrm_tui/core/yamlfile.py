"""The one YAML loader for operators' files (plans, corpora, parity, routes, profiles).

PyYAML's SafeLoader turns a whole number past Python's int-string limit (4300 digits) into a
bare ValueError with no line; here it is a YAML error with its line, like any other typo.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Loader", "load"]


class Loader(yaml.SafeLoader):
    """SafeLoader whose every problem is a `yaml.YAMLError` with a mark."""


def _int(loader: Loader, node: yaml.ScalarNode) -> object:
    try:
        return loader.construct_yaml_int(node)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"a number of {len(node.value)} digits (at most "
            f"{sys.get_int_max_str_digits()})", node.start_mark) from None


Loader.add_constructor("tag:yaml.org,2002:int", _int)


def load(path: Path, error: Callable[[str], Exception], loader: type[Loader] = Loader) -> Any:
    """An operator's YAML file, parsed (None when empty). Every problem is one `error`
    (a BadInput: exit 2) naming the file: unreadable, not UTF-8, or not YAML and where."""
    try:
        return yaml.load(path.read_bytes().decode("utf-8"), Loader=loader)
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}: not valid YAML{where}: {' '.join(str(problem).split())}") \
            from None
