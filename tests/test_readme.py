"""The README's examples work as written: the plugin of 'Writing a plugin' registers, runs on a
tiny classifier, honours the -1 padding and matches captum's gradients at one noise sample."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch

from wssbench.host.registry import build_registry

README = Path(__file__).resolve().parents[1] / "README.md"


def plugin_module() -> types.ModuleType:
    code = next(block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "register_saliency" in block)
    module = types.ModuleType("my_wsss_smoothgrad")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(code, "README.md", "exec"), module.__dict__)  # the README's own code, run as a module
    return module


def test_the_readme_plugin_registers_and_computes_maps(resnet18_classifier):
    registry = build_registry(plugins=[plugin_module()])
    method = registry.create("saliency", "smoothgrad", samples="2", sigma="0.1")
    assert method.samples == 2 and registry.get("saliency", "smoothgrad").description.startswith("SmoothGrad")
    model = resnet18_classifier(4).eval()
    images = torch.randn(2, 3, 32, 32)
    classes = torch.tensor([[1, 3], [2, -1]])
    with torch.no_grad():  # as a pipeline might call it
        maps = method(model, images, classes)
    assert maps.shape == (2, 2, 32, 32) and (maps >= 0).all() and maps[0].sum() > 0
    assert (maps[1, 1] == 0).all()  # the padding's map is all zeros
    torch.testing.assert_close(method(model, images, classes), maps)  # deterministic


def test_with_no_noise_it_is_simonyans_map_as_captum_computes_it(resnet18_classifier):
    captum = pytest.importorskip("captum.attr")
    method = build_registry(plugins=[plugin_module()]).create("saliency", "smoothgrad", samples=1, sigma=0.0)
    model = resnet18_classifier(4).eval()
    images = torch.randn(1, 3, 32, 32)
    maps = method(model, images, torch.tensor([[2]]))
    reference = captum.Saliency(model).attribute(images.clone().requires_grad_(True), target=2, abs=True).amax(1)
    torch.testing.assert_close(maps[0, 0], reference[0])
