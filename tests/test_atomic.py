"""spikelib._atomic: the one atomic-write implementation (used by checkpoints, data files, netx, NIR, caches)."""

import pytest

from spikelib._atomic import atomic_path, atomic_write, file_mode


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, lambda fh: fh.write(b"old"))
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"new, partial")
                raise exc
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert target.stat().st_mode & 0o777 == file_mode()


def test_success_replaces_and_missing_folder_is_an_error(tmp_path):
    target = tmp_path / "f.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write(tmp_path / "missing" / "x.bin", lambda fh: fh.write(b"x"))
    atomic_write(tmp_path / "made" / "x.bin", lambda fh: fh.write(b"x"), create_parent=True)
    assert (tmp_path / "made" / "x.bin").read_bytes() == b"x"
