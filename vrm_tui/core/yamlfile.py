"""The YAML loader for operators' files (plans, request corpora).

PyYAML's SafeLoader turns a whole number past Python's int-string limit (4300 digits) into a
bare ValueError with no line; here it is a YAML error with its line, like any other typo.
"""

from __future__ import annotations

import sys

import yaml

__all__ = ["Loader"]


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
