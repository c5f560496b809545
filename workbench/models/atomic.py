"""One way to write a model folder so that readers only ever see it complete: write into a sibling temp
folder, then rename (atomic on one filesystem). Used by the registry's save functions and the two built-in
model builders."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_folder_atomically(folder: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = False,
                            completed_by_other: Callable[[Path], bool] | None = None) -> Path:
    """Run `write(tmp)` into a sibling temp folder, then rename it to `folder` (replacing it if `overwrite`).

    completed_by_other: for caches filled by concurrent processes — if the final rename fails because another
    process has meanwhile published a complete `folder` (as this predicate says), keep theirs.
    """
    folder = Path(folder)
    if completed_by_other is not None and folder.exists() and completed_by_other(folder):
        return folder  # published by another process while the caller prepared its copy: nothing to write
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise ValueError(f"{folder} exists and is not empty; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700; the final folder should read like any other
    old = None
    try:
        write(tmp)
        if folder.exists() and overwrite:
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        try:
            os.replace(tmp, folder)  # replaces an empty folder, fails on a non-empty one
        except OSError:
            if completed_by_other is None or not completed_by_other(folder):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return folder
