"""Output folders: a user's folder is never replaced, a failed write leaves nothing, files get
the user's umask, and temporary files of dead processes are swept."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import wssbench.storage.io
from wssbench.errors import UsageError
from wssbench.storage.io import HOST, RUN_MARKER, atomic_dir, atomic_path, check_run_dir, run_dir, stale_temps, sweep_stale, write_mask


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def write_run(out, text="1"):
    with run_dir(out) as tmp:
        (tmp / "masks").mkdir()
        (tmp / "result.json").write_text(text)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_folders_get_the_users_umask(tmp_path, umask_022):
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    write_mask(tmp_path / "m.png", np.zeros((2, 2), np.uint8))
    write_run(tmp_path / "run")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    assert modes["a.txt"] == modes["m.png"] == modes["result.json"] == 0o644
    assert modes["run"] == modes["masks"] == 0o755


def test_new_replaced_and_refused_folders(tmp_path):
    out = tmp_path / "out"
    assert check_run_dir(out) is False
    write_run(out, "first")
    assert check_run_dir(out) is True  # an earlier run: replaced, and said by the caller
    write_run(out, "second")
    assert (out / "result.json").read_text() == "second"
    assert set(json.loads((out / RUN_MARKER).read_text())["files"]) == {"masks", "result.json"}
    assert listing(tmp_path) == ["out"]  # no temporary or .old folder beside it

    (out / "gallery.png").write_bytes(b"png")  # what 'wssbench show' adds is part of a run folder
    assert check_run_dir(out) is True
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=f"--out {out}: .*notes.txt"):
        write_run(out, "third")
    assert (out / "notes.txt").read_text() == "mine" and (out / "result.json").read_text() == "second"

    user = tmp_path / "user"
    (user / "sub").mkdir(parents=True)
    (user / "data.csv").write_text("a,b")
    with pytest.raises(UsageError, match=f"--out {user}: exists and is not a wssbench run folder .*data.csv"):
        write_run(user)
    assert listing(user) == ["data.csv", "sub"] and (user / "data.csv").read_text() == "a,b"
    assert sorted(listing(tmp_path)) == ["out", "user"]

    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        check_run_dir(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert check_run_dir(tmp_path / "empty") is False
    legacy = tmp_path / "legacy"  # a run folder from before the marker: its result.json is a wssbench record
    (legacy / "masks").mkdir(parents=True)
    (legacy / "masks" / "a.png").write_bytes(b"png")
    (legacy / "result.json").write_text('{"record_version": 1, "config": {}}')
    assert check_run_dir(legacy) is True


def test_a_file_the_user_put_inside_masks_is_never_deleted(tmp_path):
    out = tmp_path / "out"
    write_run(out)
    (out / "masks").mkdir(exist_ok=True)
    (out / "masks" / "MY_NOTES.txt").write_text("hand-corrected")
    with pytest.raises(UsageError, match="also holds masks/MY_NOTES.txt, which the run did not write"):
        write_run(out)
    assert (out / "masks" / "MY_NOTES.txt").read_text() == "hand-corrected"


def test_another_tools_predictions_are_not_a_legacy_run(tmp_path):
    """result.json and masks/ without the marker, but not a wssbench record: refused, untouched."""
    theirs = tmp_path / "theirs"
    (theirs / "masks").mkdir(parents=True)
    (theirs / "masks" / "2007_000032.png").write_bytes(b"png")
    (theirs / "result.json").write_text('{"mIoU": 61.7}')
    with pytest.raises(UsageError, match="is not a wssbench run folder"):
        write_run(theirs)
    assert (theirs / "result.json").read_text() == '{"mIoU": 61.7}'
    legacy = tmp_path / "legacy"  # a wssbench record, but something else beside the masks
    (legacy / "masks" / "deeper").mkdir(parents=True)
    (legacy / "result.json").write_text('{"record_version": 1, "config": {}}')
    (legacy / "masks" / "deeper" / "x.png").write_bytes(b"png")
    with pytest.raises(UsageError, match="masks/deeper"):
        write_run(legacy)


def test_a_failed_run_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError):
        with run_dir(tmp_path / "a" / "b" / "out") as tmp:
            (tmp / "result.json").write_text("half")
            raise RuntimeError("killed by a bug")
    assert listing(tmp_path) == []  # not the temporary folder, not the parents it made
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(UsageError, match="--out .*plain-file is not a folder"):
        write_run(tmp_path / "plain-file" / "out")
    assert listing(tmp_path) == ["plain-file"]


def test_a_folder_that_cannot_be_made_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setattr(wssbench.storage.io, "_new_temp", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(UsageError, match=f"--out {tmp_path}/new/out: cannot create it .Permission denied"):
        write_run(tmp_path / "new" / "out")
    assert listing(tmp_path) == []


def test_replacing_puts_the_old_folder_back_when_the_last_rename_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("old")
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new folder into place
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(wssbench.storage.io.os, "replace", flaky)
    with pytest.raises(OSError, match="No space"):
        with atomic_dir(out) as tmp:
            (tmp / "new").write_text("new")
    monkeypatch.undo()
    assert listing(tmp_path) == ["out"] and listing(out) == ["keep"]


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_processes_are_swept(tmp_path):
    dead, alive = dead_pid(), os.getppid()
    names = {
        "dead": f".out.{dead}-{HOST}-0123abcd.tmp",
        "dead-old": f".out.{dead}-{HOST}-0123abce.old",
        "dead-file": f".x.npy.{dead}-{HOST}-0123abcf.tmp",
        "alive": f".out.{alive}-{HOST}-0123abcd.tmp",
        "other-host": f".out.{dead}-ffffffff-0123abcd.tmp",
        "user": ".out.1234.tmp",
    }
    for key, name in names.items():
        (tmp_path / name).mkdir() if key != "dead-file" else (tmp_path / name).write_text("x")
    assert [p.name for p in stale_temps(tmp_path)] == sorted([names["dead"], names["dead-old"], names["dead-file"]])
    write_run(tmp_path / "out")  # sweeps those of its own name
    assert listing(tmp_path) == sorted(["out", names["dead-file"], names["alive"], names["other-host"], names["user"]])
    assert sweep_stale(tmp_path) == [tmp_path / names["dead-file"]]
