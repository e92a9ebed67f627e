"""``wssbench cache show`` and ``prune`` on a home of their own."""

import json

from click.testing import CliRunner

from wssbench.cli import cli


def test_show_and_prune(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path))
    (tmp_path / "maps" / "saliency-gbp-abc").mkdir(parents=True)
    (tmp_path / "maps" / "saliency-gbp-abc" / "x.npy").write_bytes(b"0" * 2048)
    (tmp_path / "classifiers").mkdir()
    (tmp_path / "classifiers" / "k.pt").write_bytes(b"0" * 100)
    runner = CliRunner()
    shown = json.loads(runner.invoke(cli, ["cache", "show", "--json"]).stdout)
    assert {(e["section"], e["entry"], e["bytes"]) for e in shown["entries"]} == {
        ("maps", "saliency-gbp-abc", 2048), ("classifiers", "k.pt", 100),
    }
    dry = runner.invoke(cli, ["cache", "prune", "--dry-run"])
    assert "would remove maps/saliency-gbp-abc" in dry.stdout and (tmp_path / "maps" / "saliency-gbp-abc").exists()
    assert runner.invoke(cli, ["cache", "prune", "--older-than", "1"]).exit_code == 0
    assert (tmp_path / "maps" / "saliency-gbp-abc").exists()  # too recent
    runner.invoke(cli, ["cache", "prune"])
    assert not (tmp_path / "maps" / "saliency-gbp-abc").exists()
    assert (tmp_path / "classifiers" / "k.pt").exists()  # not named
    assert runner.invoke(cli, ["cache", "prune", "bogus"]).exit_code == 2


def test_show_says_what_each_entry_is_and_prune_takes_sidecars(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path))
    key = {"dataset": "voc2012", "split": "train_aug", "backbone": "resnet50", "pooling": "gap", "recipe": {"epochs": 5}}
    (tmp_path / "classifiers").mkdir()
    (tmp_path / "classifiers" / "abc.pt").write_bytes(b"0" * 100)
    (tmp_path / "classifiers" / "abc.json").write_text(json.dumps({"key": key}))
    (tmp_path / "classifiers" / ".abc.pt.lock").write_text("")
    (tmp_path / "maps" / "saliency-gbp-123").mkdir(parents=True)
    (tmp_path / "maps" / "saliency-gbp-123" / "key.json").write_text(json.dumps({"classifier": "abc", "kind": "saliency", "name": "gbp"}))
    (tmp_path / "classmaps").mkdir()
    (tmp_path / "classmaps" / "zoomout-9.npz").write_bytes(b"0" * 10)
    (tmp_path / "classmaps" / "zoomout-9.json").write_text(json.dumps({"classmap": "zoomout", "classifier": "gone", "split": "train"}))
    (tmp_path / "data" / "synthetic-tiny-1").mkdir(parents=True)
    (tmp_path / "data" / "synthetic-tiny-1" / ".complete").write_text(json.dumps({"n_train": 24, "n_val": 12, "size": 64, "seed": 0}))
    runner = CliRunner()
    shown = {e["entry"]: e for e in json.loads(runner.invoke(cli, ["cache", "show", "--json"]).stdout)["entries"]}
    assert sorted(shown) == ["abc.pt", "saliency-gbp-123", "synthetic-tiny-1", "zoomout-9.npz"]  # no sidecars, no locks
    assert shown["abc.pt"]["what"] == "voc2012/train_aug, resnet50 (gap, 5 epochs)"
    assert shown["abc.pt"]["bytes"] == 100 + (tmp_path / "classifiers" / "abc.json").stat().st_size
    assert shown["saliency-gbp-123"]["what"] == "saliency gbp of voc2012/train_aug, resnet50 (gap, 5 epochs)"
    assert shown["saliency-gbp-123"]["method"] == "saliency:gbp" and shown["saliency-gbp-123"]["backbone"] == "resnet50"
    assert shown["zoomout-9.npz"]["what"] == "zoomout fit on train of classifier gone (not in the cache)"
    assert shown["synthetic-tiny-1"]["what"] == "synthetic, 24 train + 12 val images of 64 px, seed 0"
    table = runner.invoke(cli, ["cache", "show"]).stdout
    assert "resnet50" in table and "voc2012" in table
    assert runner.invoke(cli, ["cache", "prune", "classifiers", "classmaps"]).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "classifiers").iterdir()) == []  # the entry and its stale lock
    assert list((tmp_path / "classmaps").iterdir()) == []


def test_show_and_prune_remove_stale_lock_files_but_not_held_ones(tmp_path, monkeypatch):
    from filelock import FileLock

    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path))
    maps = tmp_path / "maps"
    (maps / "saliency-gbp-1").mkdir(parents=True)
    (maps / ".saliency-gbp-1.lock").touch()  # its entry is there: kept
    (maps / ".gone.lock").touch()  # its entry was removed: stale
    (maps / ".busy.lock").touch()
    with FileLock(maps / ".busy.lock"):  # another process computing: kept
        result = CliRunner().invoke(cli, ["cache", "show"])
    assert result.exit_code == 0 and "1 stale lock files removed" in result.output
    assert sorted(p.name for p in maps.glob(".*.lock")) == [".busy.lock", ".saliency-gbp-1.lock"]
    assert CliRunner().invoke(cli, ["cache", "prune", "maps"]).exit_code == 0
    assert list(maps.glob(".*.lock")) == []
