"""The CUDA path, run where a GPU is present (benchmarks/gpu_check.sh): the same numbers as the CPU."""

import json

import pytest
import torch
from click.testing import CliRunner

import wssbench
from wssbench.cli import cli
from wssbench.methods.forward import plain_forward

pytestmark = pytest.mark.cuda


def test_maps_on_the_gpu_match_the_cpu(resnet18_classifier):
    model = resnet18_classifier(6)
    x, classes = torch.randn(2, 3, 96, 64), torch.tensor([[1, 4], [0, -1]])
    for name in ("bp", "gbp", "multilayer"):
        method = wssbench.create("saliency", name)
        cpu = method(model, x, classes)
        gpu = method(model.cuda(), x.cuda(), classes.cuda()).cpu()
        model.cpu()
        torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3 * float(cpu.abs().max()))
    fcn = wssbench.create("classmap", "fcn")
    torch.testing.assert_close(fcn.from_forward(model.cuda(), plain_forward(model, x.cuda()), classes.cuda()).cpu(),
                               fcn(model.cpu(), x, classes), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_tiny_run_on_the_gpu(tmp_path, precision):
    args = ["run", "-O", "dataset.preset=tiny", "--epochs", "1", "--device", "cuda", "--precision", precision,
            "--loader-workers", "2", "--out", str(tmp_path / precision), "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["config"]["device"] == "cuda" and 0.0 <= record["miou"] <= 1.0
