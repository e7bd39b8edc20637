"""Progress that works anywhere: a tqdm bar on a terminal, plain lines on stderr otherwise.

A long job whose output goes to a file (``python experiments/main.py > log 2>&1``) must still show
that it runs. :class:`Progress` draws a tqdm bar when stderr is a terminal; otherwise it writes one
flushed line to stderr at the first update, then every ``every`` items or ``interval`` seconds,
whichever comes first, and a last line when it closes::

    [train] 120/300 (40%) loss 1.234 acc 0.52 | 3.21 step/s | elapsed 0:37 | eta 0:56

:func:`set_quiet` (the scripts' ``--quiet``) turns the lines and bars off; :func:`stage` names a
stage of a job as it starts.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")

#: Seconds between two plain lines when nothing else triggers one.
INTERVAL_S = 30.0
#: Plain lines per run at most from the count alone (one every ``total / LINES`` items).
LINES = 10

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Turn progress output (bars, lines, stage names) off or on for this process."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def stage(name: str) -> None:
    """One line on stderr naming a stage of a job as it starts (nothing when quiet)."""
    if not _quiet:
        print(f"== {name}", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _value(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.4g}"


class Progress:
    """Count ``total`` items of work (``None``: unknown) under ``desc``; see the module docstring.

    ``enabled=False`` (e.g. a rank other than 0) silences it like :func:`set_quiet`. ``initial`` is
    where a resumed run starts: rates and ETAs count only the items done in this process.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "step", initial: int = 0,
                 enabled: bool = True, every: int | None = None, interval: float = INTERVAL_S,
                 leave: bool = True) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.initial = initial, initial
        self.active = enabled and not _quiet
        self.every = every or (max(1, total // LINES) if total else 0)
        self.interval = interval
        self.postfix: dict[str, float | str] = {}
        self.began = self.last_time = time.perf_counter()
        self.last_n = initial
        self.lines = 0
        self.bar = None
        if self.active and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                            mininterval=1.0, leave=leave)

    def update(self, n: int = 1) -> None:
        """``n`` more items done (0: nothing to show)."""
        self.n += n
        if not self.active or n == 0:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if (self.lines == 0 or (self.every and self.n - self.last_n >= self.every)
                or now - self.last_time >= self.interval):
            self._line(now)

    def set_postfix(self, values: dict[str, float | str]) -> None:
        """Metrics shown after the count (the latest values; e.g. loss, accuracy)."""
        self.postfix = dict(values)
        if self.bar is not None:
            self.bar.set_postfix({k: _value(v) for k, v in values.items()}, refresh=False)

    def line(self) -> str:
        """The plain progress line for the state now."""
        elapsed = time.perf_counter() - self.began
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        count = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        parts = [f"[{self.desc}] {count}" + "".join(f" {k} {_value(v)}" for k, v in self.postfix.items()),
                 f"{rate:.3g} {self.unit}/s", f"elapsed {_clock(elapsed)}"]
        if self.total and rate > 0:
            parts.append(f"eta {_clock(max(self.total - self.n, 0) / rate)}")
        return " | ".join(parts)

    def _line(self, now: float) -> None:
        print(self.line(), file=sys.stderr, flush=True)
        self.last_time, self.last_n = now, self.n
        self.lines += 1

    def close(self) -> None:
        """Close the bar, or write the last line when items were done since the previous one."""
        if self.bar is not None:
            self.bar.close()
        elif self.active and self.n != self.last_n:
            self._line(time.perf_counter())
        self.active = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "item",
             enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while counting them on a :class:`Progress` (``total`` defaults to ``len``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit=unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()
