"""The CUDA path, run where a GPU is present (benchmarks/gpu_check.sh): the same numbers as the CPU."""

import contextlib
import json

import pytest
import torch
from click.testing import CliRunner

import wssbench
from wssbench.cli import cli
from wssbench.methods.forward import plain_forward

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("tf32", [False, True])
def test_maps_on_the_gpu_match_the_cpu(resnet18_classifier, tf32):
    """With TF32 off the GPU computes what the CPU does (to float rounding); with it on (PyTorch's
    default for cuDNN convolutions, 10 mantissa bits) the maps differ by up to about 1e-3 of their
    range: measured on an H200, a 3.3e-3 difference in FCN maps whose range is several units. Cache
    keys carry the device for this reason (``wssbench.seed.classifier.compute_key``)."""
    model = resnet18_classifier(6)
    x, classes = torch.randn(2, 3, 96, 64), torch.tensor([[1, 4], [0, -1]])
    tol = 1e-2 if tf32 else 1e-4  # of the maps' largest magnitude

    def close(gpu: torch.Tensor, cpu: torch.Tensor) -> None:
        torch.testing.assert_close(gpu, cpu, rtol=tol, atol=tol * float(cpu.abs().max()))

    with torch.backends.cudnn.flags(enabled=True, allow_tf32=tf32), _matmul_tf32(tf32):
        for name in ("bp", "gbp", "multilayer"):
            method = wssbench.create("saliency", name)
            cpu = method(model, x, classes)
            gpu = method(model.cuda(), x.cuda(), classes.cuda()).cpu()
            model.cpu()
            close(gpu, cpu)
        fcn = wssbench.create("classmap", "fcn")
        close(fcn.from_forward(model.cuda(), plain_forward(model, x.cuda()), classes.cuda()).cpu(), fcn(model.cpu(), x, classes))


@contextlib.contextmanager
def _matmul_tf32(allow: bool):
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_tiny_run_on_the_gpu(tmp_path, precision):
    args = ["run", "-O", "dataset.preset=tiny", "--epochs", "1", "--device", "cuda", "--precision", precision,
            "--loader-workers", "2", "--out", str(tmp_path / precision), "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["config"]["device"] == "cuda" and 0.0 <= record["miou"] <= 1.0
