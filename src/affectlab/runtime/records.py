"""Streaming result files: JSON Lines (one record per face, no-face or error) or CSV with fixed columns.

Records are written as they are produced, so a long video never holds its results in memory. The caller writes
into a temporary file that is renamed into place only when the run finishes (``affectlab.atomic``), so an
interrupted run never leaves a half results file that looks complete.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, TextIO

from affectlab.errors import AffectlabError
from affectlab.runtime.results import csv_row, record_columns

__all__ = ["OUTPUT_FORMATS", "RecordWriter", "output_format"]

#: Result file formats by suffix.
OUTPUT_FORMATS = {".jsonl": "jsonl", ".csv": "csv"}


def output_format(path: str | Path) -> str:
    """The format for a results path, or one clear error naming the suffixes that work."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise AffectlabError(f"{path}: unknown output format {suffix or '(none)'!r}; use .jsonl or .csv")
    return OUTPUT_FORMATS[suffix]


class RecordWriter:
    """Writes ``ImageResult.records()`` dicts to an open text stream as JSONL or CSV.

    ``landmarks`` appends the ``POSE_COLUMNS`` (face score of the mesh, yaw, pitch, roll) to the CSV columns;
    ``eyes`` appends those and then the ``EYE_COLUMNS`` (gaze, openness, blinks).
    """

    def __init__(self, stream: TextIO, fmt: str = "jsonl", landmarks: bool = False, eyes: bool = False) -> None:
        self.stream, self.fmt = stream, fmt
        self.columns = record_columns(landmarks, eyes)
        self._csv = csv.writer(stream) if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(self.columns)

    def write(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            if self._csv is not None:
                self._csv.writerow(csv_row(record, self.columns))
            else:
                self.stream.write(json.dumps(record, allow_nan=False) + "\n")
