"""No file a user is given runs code when wssbench reads it: a payload per entry point.

Each test writes a file whose pickle would create a marker file if it were ever unpickled,
feeds it where a user (or a colleague sharing ``WSSBENCH_HOME``) could, and checks that it is
refused in one line and that the marker never appears. Other entry points are tested beside
their code: ``cls_labels.npy`` (test_voc2012), proposal and zoom-out cache entries
(test_objectness, test_cache_damage), count files (test_uncertainty).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from wssbench.classifier.training import load_cached_checkpoint, save_checkpoint
from wssbench.cli import cli as wssbench_cli
from wssbench.storage.cache import file_digest

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the payload ran"))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"weight": torch.zeros(1)}, "meta": {"key": Payload(marker)}}, path)
    return path


def cli(*args: str):
    return CliRunner().invoke(wssbench_cli, list(args))


def test_run_with_weights_that_would_run_code(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    marker = tmp_path / "PWNED"
    weights = evil_checkpoint(tmp_path / "evil.pth", marker)
    result = cli("run", "-O", "dataset.preset=tiny", "--epochs", "1", "--weights", str(weights), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    assert "evil.pth: not a torch checkpoint of tensors: it asks to build '" in result.output
    assert "weights_only" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_garbage_weights_are_not_a_torch_checkpoint_and_no_advice_to_turn_the_safety_off(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(256)) * 4)
    result = cli("run", "-O", "dataset.preset=tiny", "--epochs", "1", "--weights", str(garbage))
    assert result.exit_code == 1 and "garbage.pth: not a torch checkpoint" in result.output
    assert "weights_only" not in result.output


def test_explain_with_a_checkpoint_that_would_run_code(tmp_path, tiny_dataset):
    marker = tmp_path / "PWNED"
    checkpoint = evil_checkpoint(tmp_path / "evil.pt", marker)
    image = tiny_dataset.image_path(tiny_dataset.ids("val")[0])
    result = cli("explain", str(image), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "panel.png"))
    assert result.exit_code == 1 and "evil.pt: not a torch checkpoint of tensors" in result.output
    assert not marker.exists() and not (tmp_path / "panel.png").exists()


def test_a_cached_classifier_replaced_by_a_payload_is_damaged_not_run(tmp_path, monkeypatch, resnet18_classifier):
    """Someone with write access to a shared cache replaces a checkpoint and recomputes the size
    and digest beside it: the entry is reported damaged, never unpickled."""
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    model = resnet18_classifier(3)
    path = tmp_path / "home" / "classifiers" / "abc.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(path, model, {"key": {}})
    marker = tmp_path / "PWNED"
    evil_checkpoint(path, marker)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["file"] = {"bytes": path.stat().st_size, "blake2b": file_digest(path, None, "blake2b")}
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="abc.pt: damaged cache entry .*not a torch checkpoint of tensors"):
        assert load_cached_checkpoint(path, model) is None
    assert not marker.exists()
