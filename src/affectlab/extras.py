"""Optional packages (``affectlab[scale]``: LitData, Ray; ``[serve]``: FastAPI, Gradio), imported with one clear
line when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from affectlab.errors import AffectlabError

__all__ = ["require"]


def require(module: str, feature: str, extra: str = "scale") -> ModuleType:
    """Import ``module`` for ``feature``, or stop with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AffectlabError(
            f"{feature} needs the optional package {module.split('.')[0]}: pip install 'affectlab[{extra}]'"
        ) from None
