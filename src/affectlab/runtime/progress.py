"""The rate column of the `predict` progress bar (the command and `affectlab.predict(progress=True)`)."""

from __future__ import annotations

from rich.progress import ProgressColumn, Task
from rich.text import Text

__all__ = ["ItemRate"]


class ItemRate(ProgressColumn):
    """Items per second since the bar started: all items done over all the time taken.

    Not rich's ``task.speed``: that divides the items advanced after the first update by the time since the first
    update. Results arrive a batch at a time, nearly at once, so after the first batch it showed thousands of items
    per second, and later it still left out the time the first batch took.
    """

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        return Text(f"{task.completed / elapsed if elapsed else 0.0:.1f} items/s")
