"""Per-track summaries and timeline plots of a video: who showed which emotion, and when.

``predict --save-annotated`` feeds every processed frame of a video to a ``TrackLog`` and, when the video ends,
writes ``<video>.tracks.json`` (per track: dominant emotion, mean valence/arousal, first and last time, seconds
on screen, frames; with ``--eyes`` also blinks, blinks per minute and mean gaze) and ``<video>.tracks.png`` (one
row per track: emotion probabilities, valence/arousal and eye openness over time) next to the annotated video.
Only the numbers per face and frame are kept, not the frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from affectlab.atomic import atomic_write, write_json
from affectlab.runtime.annotate import EMOTION_COLOURS
from affectlab.runtime.results import ImageResult

__all__ = ["TrackLog"]

#: Tracks shown in the plot at most (the longest ones); the summary lists every track.
MAX_PLOTTED = 8


@dataclass
class _Series:
    times: list[float] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    va: list[tuple[float, float]] = field(default_factory=list)
    eye_times: list[float] = field(default_factory=list)
    openness: list[float] = field(default_factory=list)
    gaze: list[tuple[float, float]] = field(default_factory=list)
    blinks: int = 0


class TrackLog:
    """Collects each track's predictions over a video; ``write`` saves the summary and the timeline plot."""

    def __init__(self, fps: float, every: int = 1) -> None:
        self.step = every / fps if fps > 0 else None  # seconds one processed frame stands for
        self.class_names: tuple[str, ...] = ()
        self._tracks: dict[int, _Series] = {}
        self._count = 0

    def add(self, result: ImageResult) -> None:
        if result.error is not None:
            return
        when = result.time_s if result.time_s is not None else float(self._count)
        self._count += 1
        for face in result.faces:
            if face.track_id is None:
                continue
            series = self._tracks.setdefault(face.track_id, _Series())
            series.times.append(when)
            self.class_names = face.class_names
            if face.probs is not None:
                series.probs.append(np.asarray(face.probs, dtype=np.float64))
            if face.valence is not None and face.arousal is not None:
                series.va.append((face.valence, face.arousal))
            eyes = face.eyes
            if eyes is not None and eyes.openness is not None:
                series.eye_times.append(when)
                series.openness.append(float(np.mean(eyes.openness)))
                series.gaze.append((eyes.gaze_yaw or 0.0, eyes.gaze_pitch or 0.0))
                series.blinks = max(series.blinks, eyes.blinks or 0)

    def summary(self) -> list[dict[str, Any]]:
        """One entry per track, in order of appearance."""
        rows = []
        for track_id, s in sorted(self._tracks.items()):
            row: dict[str, Any] = {
                "track_id": track_id,
                "frames": len(s.times),
                "first_s": round(s.times[0], 3),
                "last_s": round(s.times[-1], 3),
                "seconds_on_screen": None if self.step is None else round(len(s.times) * self.step, 3),
            }
            if s.probs:
                mean = np.mean(s.probs, axis=0)
                row["dominant_emotion"] = self.class_names[int(np.argmax(mean))]
                row["mean_probs"] = {n: round(float(p), 4) for n, p in zip(self.class_names, mean)}
            if s.va:
                row["mean_valence"], row["mean_arousal"] = (round(float(v), 4) for v in np.mean(s.va, axis=0))
            if s.openness:  # appended after the fields of before, so that old readers keep working
                seconds = row["seconds_on_screen"] or (s.times[-1] - s.times[0])
                row["blinks"] = s.blinks
                row["blinks_per_minute"] = round(60.0 * s.blinks / seconds, 2) if seconds else None
                row["mean_openness"] = round(float(np.mean(s.openness)), 4)
                row["mean_gaze_yaw"], row["mean_gaze_pitch"] = (round(float(v), 2) for v in np.mean(s.gaze, axis=0))
            rows.append(row)
        return rows

    def write(self, video_path: Path) -> list[Path]:
        """``<video>.tracks.json`` and, when there is a track, ``<video>.tracks.png``; returns the paths written."""
        stem = video_path.with_suffix("")
        written = [write_json(stem.with_name(stem.name + ".tracks.json"), {"tracks": self.summary()})]
        if self._tracks:
            written.append(self._plot(stem.with_name(stem.name + ".tracks.png")))
        return written

    def _plot(self, path: Path) -> Path:
        fig = self.figure()
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))

    def figure(self) -> Figure:
        """The timeline: one row per track (the ``MAX_PLOTTED`` longest), probabilities and V/A over time."""
        if not self._tracks:
            raise ValueError("no track to plot yet")
        longest = sorted(self._tracks.items(), key=lambda kv: -len(kv[1].times))[:MAX_PLOTTED]
        shown = sorted(longest)
        fig = Figure(figsize=(10, 2.4 * len(shown)), constrained_layout=True)
        axes = fig.subplots(len(shown), 1, squeeze=False, sharex=True)[:, 0]
        for ax, (track_id, s) in zip(axes, shown):
            t = np.asarray(s.times)
            if s.probs:
                probs = np.asarray(s.probs)
                for k, name in enumerate(self.class_names):
                    colour = np.asarray(EMOTION_COLOURS.get(name, (128, 128, 128))) / 255.0
                    ax.plot(t[: len(probs)], probs[:, k], color=colour, lw=1.4, label=name)
                ax.set_ylim(0, 1)
                ax.set_ylabel("probability")
            if s.va:
                va = np.asarray(s.va)
                twin = ax.twinx()
                twin.plot(t[: len(va)], va[:, 0], "k-", lw=1.2, label="valence")
                twin.plot(t[: len(va)], va[:, 1], "k--", lw=1.2, label="arousal")
                twin.set_ylim(-1, 1)
                twin.set_ylabel("valence / arousal")
                twin.legend(loc="upper right", fontsize=7)
            if s.openness:  # on the probability axis: an open eye reads about 0.25, a closed one near 0
                ax.plot(s.eye_times, s.openness, color="0.35", ls=":", lw=1.4, label="eye openness")
                ax.set_ylim(0, 1)
            title = f"track {track_id}" + (f", {s.blinks} blinks" if s.openness else "")
            ax.set_title(title, fontsize=9, loc="left")
        axes[0].legend(loc="upper left", fontsize=7, ncol=4)
        axes[-1].set_xlabel("time (s)")
        return fig
