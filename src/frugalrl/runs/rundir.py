"""The run directory ``logs/{experiment}/{config_idx}/`` (Explorer/MeDQN layout).

``config.json`` (the resolved config), ``log.txt`` (ending with ``Memory usage: X MB`` and
``Time elapsed: Y minutes``), result CSVs (one row per finished training episode, per evaluation,
per segment of updates), ``checkpoints/``. CSV rows are appended and flushed as they come; a
checkpoint records how many rows each file had, and a resumed run cuts the files back to that.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import resource
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from frugalrl.errors import CheckpointError

TRAIN_COLUMNS = ["env", "agent", "seed", "episode", "step", "return", "length"]
TEST_COLUMNS = ["env", "agent", "seed", "step", "return", "return_std", "episodes"]
FINISHED_PREFIX = "Time elapsed:"


def evaluation_rows(env: str, agent: str, seeds: list[int], step: int, returns: Any) -> list[list[Any]]:
    """TEST_COLUMNS rows of one evaluation: ``returns`` is [seeds, episodes]."""
    rows = zip(seeds, returns, strict=True)
    return [[env, agent, seed, step, float(r.mean()), float(r.std()), len(r)] for seed, r in rows]


class CsvLog:
    """An append-only CSV whose row count and digest are known, so it can be cut back and checked on resume."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns, self.rows = path, columns, 0
        self._handle = None
        self._digest = hashlib.blake2b(digest_size=16)

    @property
    def digest(self) -> str:
        """The digest of every byte written so far (header and rows)."""
        return self._digest.hexdigest()

    def open(self, keep_rows: int | None, digest: str | None = None) -> None:
        """Start fresh (keep_rows None) or keep the header and the first ``keep_rows`` rows, refusing
        (CheckpointError, naming the file) a file that is gone, shorter, or whose kept rows do not
        match ``digest`` (what a checkpoint recorded of them)."""
        self._digest = hashlib.blake2b(digest_size=16)
        if keep_rows is None:
            with open(self.path, "w", newline="") as handle:
                handle.write(self._text([self.columns]))
            self.rows = 0
        else:
            self._keep(keep_rows, digest)
        self._handle = open(self.path, "a", newline="")

    def verify(self, keep_rows: int | None, digest: str | None = None) -> None:
        """CheckpointError (naming the file) unless ``open(keep_rows, digest)`` would succeed; changes nothing."""
        if keep_rows is not None:
            self._kept(keep_rows, digest)

    def _keep(self, keep_rows: int, digest: str | None) -> None:
        kept, self._digest = self._kept(keep_rows, digest)
        write_atomic(self.path, kept)
        self.rows = keep_rows

    def _kept(self, keep_rows: int, digest: str | None) -> tuple[str, Any]:
        """The header and the first ``keep_rows`` rows, and their digest, checked against ``digest``."""
        fix = "put it back as it was, or rerun with --fresh to start over"
        if not self.path.exists():
            raise CheckpointError(f"{self.path} is missing, but the checkpoint holds {keep_rows} of its rows; {fix}")
        with open(self.path, newline="") as handle:
            lines = handle.readlines()[: keep_rows + 1]
        if len(lines) < keep_rows + 1:
            raise CheckpointError(f"{self.path} has {len(lines) - 1} rows, its checkpoint recorded {keep_rows}; {fix}")
        kept = "".join(lines)
        kept_digest = hashlib.blake2b(kept.encode(), digest_size=16)
        if digest is not None and kept_digest.hexdigest() != digest:
            raise CheckpointError(f"{self.path} was changed after its checkpoint (its first {keep_rows} rows); {fix}")
        return kept, kept_digest

    def _text(self, rows: Iterable[Iterable[Any]]) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in rows:
            writer.writerow(_fmt(v) for v in row)
        text = buffer.getvalue()
        self._digest.update(text.encode())
        return text

    def write(self, rows: Iterable[Iterable[Any]]) -> None:
        rows = list(rows)
        self._handle.write(self._text(rows))
        self.rows += len(rows)

    def flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file (even when its last flush fails, which is raised)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.7g}"  # the values are float32: more digits are noise
    return value


class RunDir:
    """Paths and files of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config_path = path / "config.json"
        self.log_path = path / "log.txt"
        self.checkpoints = path / "checkpoints"

    def saved_config(self) -> dict[str, Any] | None:
        """The config the run was started with, None before it started; CheckpointError (naming the
        file) for one that cannot be read back."""
        try:
            saved = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
            raise CheckpointError(
                f"{self.config_path} cannot be read ({reason}); put back the config the run started with, or rerun "
                "with --fresh to start over"
            ) from None
        if not isinstance(saved, dict):
            raise CheckpointError(f"{self.config_path} does not hold a config; rerun with --fresh to start over")
        return saved

    def write_config(self, cfg: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, cfg, indent=2)

    @property
    def failed_path(self) -> Path:
        return self.path / "FAILED"

    def failure(self) -> dict[str, Any] | None:
        """What made the run fail (error, step, seeds, time), or None if it has not failed."""
        try:
            return json.loads(self.failed_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"error": "unreadable FAILED record", "step": None, "seeds": []}

    def mark_failed(self, error: str, step: int | None, seeds: list[int]) -> None:
        record = {"error": error, "step": step, "seeds": seeds, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(self.failed_path, record)

    @property
    def dropped_path(self) -> Path:
        return self.path / "DROPPED"

    def dropped(self) -> dict[str, Any]:
        """{seed: {step, error}} of the seeds a run dropped (``train/on_divergence`` 'drop')."""
        try:
            return json.loads(self.dropped_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {"?": {"step": None, "error": "unreadable DROPPED record"}}

    def write_dropped(self, dropped: dict[int, dict[str, Any]]) -> None:
        if not dropped:
            self.dropped_path.unlink(missing_ok=True)
            return
        write_json(self.dropped_path, {str(seed): record for seed, record in dropped.items()})

    def finished(self) -> bool:
        """Explorer's test: the last line of log.txt is the 'Time elapsed' line."""
        if not self.log_path.exists():
            return False
        lines = self.log_path.read_text().strip().splitlines()
        return bool(lines) and FINISHED_PREFIX in lines[-1]

    def logger(self) -> logging.Logger:
        """A logger writing to log.txt (appending, so a resumed run keeps its history); one per run
        directory, so that the runs of a packed program each keep their own log."""
        log = logging.getLogger(f"frugalrl.run:{self.path.resolve()}")
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
        handler = _FailingFileHandler(self.log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
        # orbax reports through absl's logger from its own threads, and its failed writes leave asyncio
        # tasks whose errors asyncio logs when they are collected: into log.txt, not onto the screen
        for name in ("absl", "asyncio"):
            other = logging.getLogger(name)
            other.handlers, other.propagate = [handler], False
        return log


class _FailingFileHandler(logging.FileHandler):
    """log.txt's handler: a failed write (a full disk) is raised to the run, not printed as a
    traceback and forgotten, as logging does by default."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if threading.current_thread() is threading.main_thread():
            raise  # the OSError being handled
        # a background thread's record (orbax's) is lost with the disk; the main thread will say why


def write_atomic(path: Path, text: str, sync: bool = False) -> None:
    """Write ``text`` to a temporary file, then rename it over ``path``: never half a file, and no
    temporary file left behind when the write fails (a full disk)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as handle:
            handle.write(text)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any, indent: int = 1) -> None:
    """Write ``data`` as JSON through a temporary file (``write_atomic``)."""
    write_atomic(path, json.dumps(data, indent=indent) + "\n")


BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def counted(number: int, noun: str) -> str:
    """'1 seed', '2 seeds'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def human_bytes(count: float, digits: int = 2) -> str:
    """``count`` bytes in binary units with ``digits`` decimals: 1536 -> '1.50 KiB', 713 -> '713 B'.
    Integers are rounded exactly (a forged header can claim sizes past a float's precision);
    sizes past the exbibytes are only bounded."""
    if count >= 1024 ** len(BINARY_UNITS):
        return f"more than 1024 {BINARY_UNITS[-1]}"
    power = 0
    while count >= 1024 ** (power + 1):
        power += 1
    if power == 0:
        return f"{count:.0f} B"
    if isinstance(count, int):
        scale = 10**digits
        scaled = (count * scale + 1024**power // 2) // 1024**power  # rounded to the nearest 10**-digits
        return f"{scaled // scale}.{scaled % scale:0{digits}d} {BINARY_UNITS[power]}"
    return f"{count / 1024**power:.{digits}f} {BINARY_UNITS[power]}"


def peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
