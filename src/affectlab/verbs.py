"""Packages that are also verbs: ``affectlab.export(...)`` and ``affectlab.serve(...)`` call their package.

``affectlab.export`` and ``affectlab.serve`` name both a subpackage and the API function of that verb, and Python
sets a package's attribute to its subpackage as soon as the subpackage is imported (by affectlab itself, a test
or a user's script), which would hide the function. So each of these packages is made callable: calling it
calls the verb's function in that package. ``affectlab.api`` offers the same functions under the same names.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["callable_package"]


def callable_package(package: str, function: str) -> None:
    """Make the already imported ``package`` call ``package.function`` (a ``module:name`` path inside it)."""
    module_name, _, name = function.partition(":")

    class _Verb(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module_name), name)(*args, **kwargs)

    sys.modules[package].__class__ = _Verb
