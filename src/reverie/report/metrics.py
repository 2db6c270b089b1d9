"""Run outputs: ``metrics.jsonl`` (one JSON object per line), TensorBoard scalars, videos,
``status.json`` and the console progress line. Formats: docs/ARCHITECTURE.md."""

from __future__ import annotations

import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from reverie.utils import atomic_write_bytes, atomic_write_text, naming


class MetricsLogger:
    """Appends scalars to ``metrics.jsonl`` and TensorBoard under ``logdir``.

    Each ``write`` is one line with ``step`` (agent steps), ``frames`` and ``time``, flushed
    at once so a killed run loses at most the line being written (readers skip a torn line).
    A write that fails (a full disk) raises ``OSError`` in the calling thread, TensorBoard's
    included: its writer thread keeps the error for the next call. The writer thread also
    prints it, unless the entry point runs inside ``reverie.runtime.quiet_writer_thread_errors``
    (``reverie.run.train.train`` does).
    """

    def __init__(self, logdir: Path, action_repeat: int, tensorboard: bool = True):
        self.logdir = Path(logdir)
        self.action_repeat = action_repeat
        self._file = open(self.logdir / "metrics.jsonl", "a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.logdir), flush_secs=30)
            except ImportError:  # tensorboard missing: the JSONL log is still complete
                self._writer = None

    def write(self, step: int, scalars: dict[str, float], elapsed: float) -> None:
        clean = {k: float(v) for k, v in scalars.items() if v is not None and math.isfinite(float(v))}
        record = {"step": step, "frames": step * self.action_repeat, "time": round(elapsed, 3), **clean}
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as error:
            raise naming(error, self._file.name) from error
        if self._writer is not None:
            try:
                for key, value in clean.items():
                    self._writer.add_scalar(key, value, step)
            except OSError as error:
                raise naming(error, self.logdir / "events.out.tfevents.*") from error

    def close(self, quiet: bool = False) -> None:
        """Close both outputs; ``quiet`` drops their errors (the run is already stopping for one)."""
        for close in (self._file.close, self._writer.close if self._writer is not None else None):
            try:
                if close is not None:
                    close()
            except OSError:
                if not quiet:
                    raise


def truncate_metrics(path: Path, upto_step: int) -> None:
    """Drop lines logged after ``upto_step`` (and a torn last line): a resumed run logs them again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= upto_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(line + "\n" for line in kept))


STATUS_FILE = "status.json"  # a run's state for `reverie sweep --status` and scripts (docs/ARCHITECTURE.md)


def status_path(logdir: str | Path) -> Path:
    return Path(logdir) / STATUS_FILE


def write_status(logdir: Path, **fields: Any) -> None:
    atomic_write_text(status_path(logdir), json.dumps(fields, indent=1) + "\n")


def save_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Write uint8 frames ``[T, H, W, C]`` (C = 1 or 3) as a GIF."""
    import imageio.v2 as imageio

    frames = np.asarray(frames)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    buffer = io.BytesIO()  # written whole or not at all: a full disk leaves no broken GIF
    imageio.mimsave(buffer, list(frames), format="GIF", duration=1000 / fps, loop=0)
    atomic_write_bytes(path, buffer.getvalue())
    return path


class Progress:
    """One console line: step, frames, fps, updates/s, last returns, ETA.

    On a terminal it is redrawn in place at most every ``interval`` seconds; otherwise one
    line is printed per ``interval`` so logs stay readable.
    """

    def __init__(self, total_steps: int, action_repeat: int, interval: float = 1.0):
        self.total = total_steps
        self.repeat = action_repeat
        self.interval = interval if sys.stdout.isatty() else max(interval, 30.0)
        self.tty = sys.stdout.isatty()
        self._last = 0.0

    def update(self, step: int, fps: float, ups: float, last_return: float | None,
               eval_return: float | None, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        eta = (self.total - step) / fps if fps > 0 else float("nan")
        parts = [
            f"step {step:,}/{self.total:,}",
            f"frames {step * self.repeat:,}",
            f"{fps:.0f} steps/s",
            f"{ups:.2f} updates/s",
            f"return {_fmt(last_return)}",
            f"eval {_fmt(eval_return)}",
            f"ETA {format_duration(eta)}",
        ]
        line = " | ".join(parts)
        if self.tty:
            print("\r" + line.ljust(110), end="", flush=True)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.tty:
            print()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
