"""Atomic writes (hkdsme.pipeline.atomic): all-or-nothing, no leftovers, and the usual file mode."""
import os
import stat

import pytest

from hkdsme.pipeline import atomic
from hkdsme.pipeline.atomic import atomic_path, write_text


@pytest.fixture
def umask(monkeypatch):
    """Set the umask hkdsme.pipeline.atomic applies (it reads the process umask once, at import)."""
    return lambda m: monkeypatch.setattr(atomic, "_UMASK", m)


def test_reads_the_process_umask_and_leaves_it_alone():
    old = os.umask(0o027)
    try:
        assert atomic._read_umask() == 0o027
        assert os.umask(0o027) == 0o027          # still set after reading
    finally:
        os.umask(old)


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_follows_umask_not_mkstemp(tmp_path, umask, mask, expected):
    umask(mask)
    p = write_text(tmp_path / "a.txt", "x\n")
    assert p.read_text() == "x\n"
    assert _mode(p) == expected


def test_error_keeps_old_file_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "sub" / "model.pt"
    write_text(dest, "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(dest) as tmp:
            assert tmp.parent == dest.parent and tmp.name.startswith(".model.pt.tmp-")
            tmp.write_text("half a new fi")
            raise RuntimeError("disk full")
    assert dest.read_text() == "old"
    assert sorted(x.name for x in dest.parent.iterdir()) == ["model.pt"]


def test_creates_folder_and_replaces(tmp_path):
    dest = tmp_path / "a" / "b" / "out.csv"
    write_text(dest, "1\n")
    write_text(dest, "2\n")
    assert dest.read_text() == "2\n"
    assert list(dest.parent.iterdir()) == [dest]


def test_checkpoint_is_readable_by_others(tmp_path, umask):
    umask(0o022)
    # regression: checkpoints written through mkstemp used to be 0600
    from hkdsme.model.checkpoint import save_checkpoint
    from hkdsme.model.student import MSNet

    p = save_checkpoint(tmp_path / "s.pt", MSNet(), kind="student", config={}, feature_hash="0" * 16)
    assert _mode(p) == 0o644
