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
