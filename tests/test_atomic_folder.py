"""write_folder_atomically: readers see a folder whole or not at all, and concurrent cache fillers don't fail."""
from __future__ import annotations

import pytest

from workbench.models.atomic import write_folder_atomically


def _write(tmp):
    (tmp / "config.json").write_text("{}")


def test_publishes_the_written_folder_and_leaves_no_temp(tmp_path):
    out = write_folder_atomically(tmp_path / "m", _write)
    assert (out / "config.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_refuses_to_replace_a_folder_without_overwrite(tmp_path):
    write_folder_atomically(tmp_path / "m", _write)
    with pytest.raises(ValueError, match="exists and is not empty"):
        write_folder_atomically(tmp_path / "m", _write)


def test_a_cache_published_by_another_process_meanwhile_is_kept(tmp_path):
    """Two processes materialise the same cached model: the second must use the first's copy, not fail
    (seen when two grid queues started on a fresh machine)."""
    folder = tmp_path / "m"
    write_folder_atomically(folder, lambda t: (t / "config.json").write_text("first"))
    calls = []
    out = write_folder_atomically(folder, lambda t: calls.append(t),
                                  completed_by_other=lambda f: (f / "config.json").exists())
    assert out == folder and calls == []
    assert (folder / "config.json").read_text() == "first"


def test_an_incomplete_folder_of_another_process_is_still_an_error(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "partial.bin").write_text("x")
    with pytest.raises(ValueError, match="exists and is not empty"):
        write_folder_atomically(folder, _write, completed_by_other=lambda f: (f / "config.json").exists())
