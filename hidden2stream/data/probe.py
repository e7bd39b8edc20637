"""Which files of a video dataset are usable, decided once, when the dataset is built.

Datasets probe every file up front (:func:`probe_videos`: packets demuxed, nothing decoded), drop
the unreadable ones and those too short for a window, log one line per dropped file and one count
line (:func:`report_dropped`), and never stand one video in for another later. Probe results are
kept per (path, size, mtime) for the life of the process and, given a folder (the datasets' frame
cache), in ``probe.json`` there, so building a train and a test set, or a rerun, probes each file once.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Sequence

from hidden2stream.data.video import VideoInfo, probe_video, warn_if_truncated
from hidden2stream.atomic import write_atomic
from hidden2stream.errors import UserError, VideoError

log = logging.getLogger(__name__)

PROBE_FILE = "probe.json"

Entry = dict[str, Any]  # {"size", "mtime_ns"} and the VideoInfo fields but "path", or {"size", "mtime_ns", "error"}
_INFO_KEYS = {"size", "mtime_ns"} | {f.name for f in fields(VideoInfo)} - {"path"}
_known: dict[str, Entry] = {}  # absolute path -> its last probe in this process


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _fresh(entry: Entry | None, stat: tuple[int, int]) -> bool:
    """Whether ``entry`` describes the file as it is now (and in this version's format)."""
    return (isinstance(entry, dict) and (entry.get("size"), entry.get("mtime_ns")) == stat
            and ("error" in entry or set(entry) == _INFO_KEYS))


def _probe(path: Path, stat: tuple[int, int] | None) -> Entry:
    """A fresh probe of ``path`` as a cache entry (``stat``: its size and mtime, None if absent)."""
    size, mtime_ns = stat if stat is not None else (None, None)
    try:
        fields = asdict(probe_video(path))
    except VideoError as exc:
        return {"size": size, "mtime_ns": mtime_ns, "error": str(exc)}
    del fields["path"]
    return {"size": size, "mtime_ns": mtime_ns, **fields}


def _result(path: Path, entry: Entry) -> VideoInfo | VideoError:
    if "error" in entry:
        return VideoError(entry["error"])
    info = VideoInfo(path=path, **{k: v for k, v in entry.items() if k not in ("size", "mtime_ns")})
    warn_if_truncated(info)  # also when the probe came from a cache
    return info


def _read_cache(file: Path) -> dict[str, Entry]:
    try:
        stored = json.loads(file.read_text())
    except (OSError, ValueError):  # absent or damaged: it is only a cache
        return {}
    return stored if isinstance(stored, dict) else {}


def _write_cache(file: Path, entries: dict[str, Entry]) -> None:
    """Atomically (temporary file + rename), so parallel builders never leave a half-written file."""
    write_atomic(file, lambda handle: json.dump(entries, handle), binary=False)


def probe_videos(paths: Sequence[str | Path], cache_dir: str | Path | None = None) -> list[VideoInfo | VideoError]:
    """Each file's :class:`VideoInfo` (frames it holds, fps, size), or the :class:`VideoError` saying
    why it cannot be read; probed once per (path, size, mtime) in this process and, with
    ``cache_dir``, across processes through ``cache_dir/probe.json``."""
    stored = _read_cache(Path(cache_dir) / PROBE_FILE) if cache_dir is not None else {}
    changed = False
    results: list[VideoInfo | VideoError] = []
    for path in map(Path, paths):
        key, stat = str(path.absolute()), _stat(path)
        if stat is None:  # absent: nothing to key an entry by, and probing it is instant
            results.append(_result(path, _probe(path, None)))
            continue
        if not _fresh(_known.get(key), stat):
            _known[key] = stored[key] if _fresh(stored.get(key), stat) else _probe(path, stat)
        if cache_dir is not None and stored.get(key) != _known[key]:
            stored[key], changed = _known[key], True
        results.append(_result(path, _known[key]))
    if changed:
        _write_cache(Path(cache_dir) / PROBE_FILE, stored)
    return results


def report_dropped(dropped: Sequence[str], total: int, rule: str, where: str | Path) -> None:
    """Log one warning per dropped video (``dropped``: one line each, naming the file) and a count
    line; a one-line :class:`UserError` when all ``total`` videos in ``where`` were dropped.
    ``rule`` says what dropped them, e.g. ``unreadable or shorter than 11 frames``."""
    for reason in dropped:
        log.warning("dropped video: %s", reason)
    if len(dropped) == total:
        raise UserError(f"no usable video in {where}" + (f": all {total} are {rule} (see the log)" if total else ""))
    if dropped:
        log.warning("dropped %d of %d videos in %s: %s", len(dropped), total, where, rule)
