"""User-facing errors.

Anything a user can cause (a wrong path, a bad option, a corrupt file) is raised as ``AffectlabError`` with a
single line that names the file or option and what is wrong. The CLI prints that line and exits non-zero
instead of showing a traceback; library users can catch one exception type.
"""

from __future__ import annotations

__all__ = ["AffectlabError"]


class AffectlabError(Exception):
    """A problem caused by input or environment, explained in one line."""
