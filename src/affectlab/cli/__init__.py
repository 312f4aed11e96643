"""The ``affectlab`` command: argument parsing and output formatting; each verb is one call of the Python API."""

from affectlab.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
