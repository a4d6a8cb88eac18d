"""Outputs appear whole or not at all: a stage writes into a staging directory beside its output and
renames it into place when complete, so a failed or killed run leaves the previous output untouched.

The swap is two renames on one filesystem (old -> aside, staging -> final), then the old directory
is deleted; a failure between them puts the old one back. A run killed mid-write leaves only a
hidden ``.<name>.staging-<pid>-<hex>`` directory, removed by the next run once its process is gone.
"""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fusionlog.config import FusionLogError


def check_replaceable(final: str | Path, markers: tuple[str, ...], key: str) -> None:
    """Refuse, before any work, to replace a path that is not a directory this stage wrote.

    A directory is ours when it is empty or holds one of ``markers`` (e.g. ``manifest.json``);
    anything else may be the user's, and replacing it would delete it. ``key`` names the config key.
    """
    final = Path(final)
    if not final.exists():
        return
    if not final.is_dir():
        raise FusionLogError(f"{key}: {final} exists and is not a directory; give a directory path")
    if any(final.iterdir()) and not any((final / m).exists() for m in markers):
        raise FusionLogError(f"{key}: {final} is not empty and holds none of {', '.join(markers)}, so it was not "
                             "written by this stage; outputs replace the whole directory: give a new or empty one")


@contextmanager
def staged_dir(final: str | Path, markers: tuple[str, ...], key: str) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``final``, on any error it is deleted."""
    final = Path(final)
    check_replaceable(final, markers, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    stage = final.parent / f".{final.name}.staging-{os.getpid()}-{secrets.token_hex(4)}"
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    replace_dir(stage, final)


def replace_dir(new: Path, final: Path) -> None:
    """``new`` takes ``final``'s place; the old directory is deleted only after the swap succeeded."""
    old = final.parent / f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}" if final.exists() else None
    if old is not None:
        try:
            os.rename(final, old)
        except OSError as exc:  # a mount point, or a folder another process holds
            raise FusionLogError(f"cannot replace {final} ({exc.strerror}); the complete output is in {new}. If "
                                 f"{final} is a mount point, give a directory inside it") from None
    try:
        os.rename(new, final)
    except OSError:
        if old is not None:
            os.rename(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale(final: Path) -> None:
    """Delete staging and old directories of ``final`` left by runs whose process is gone (killed mid-write)."""
    for path in final.parent.glob(f".{final.name}.*-*-*"):
        kind, _, rest = path.name[len(final.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("staging", "old") and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small file through a temporary beside it and ``os.replace``: readers see old or new, never half."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, path)
