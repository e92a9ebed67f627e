"""Every registered segnet and objective honours its hook contract; DeepLab-LargeFOV's surgery."""

import pytest
import timm
import torch

from wssbench.host.registry import default_registry
from wssbench.segmentation.batch import SegBatch

REGISTRY = default_registry()
TINY = {"deeplab-largefov": {"encoder": "vgg11", "channels": 32}, "deeplabv3plus": {"encoder": "resnet10t"},
        "deeplabv3": {"encoder": "resnet10t"}}


@pytest.mark.parametrize("name", REGISTRY.names("segnet"))
def test_segnet_maps_images_to_logits(name):
    segnet = REGISTRY.create("segnet", name, **TINY.get(name, {}))
    torch.manual_seed(0)
    net = segnet.build(5).eval()
    with torch.no_grad():
        logits = net(torch.randn(2, 3, 64, 48))
    assert logits.shape[:2] == (2, 5) and 64 % logits.shape[2] == 0 and 48 % logits.shape[3] == 0
    assert torch.isfinite(logits).all()
    assert len(segnet.mean) == 3 and len(segnet.std) == 3
    if hasattr(net, "new_parameters"):
        assert 0 < len(net.new_parameters()) < len(list(net.parameters()))


@pytest.mark.slow
def test_largefov_has_output_stride_8_and_decimates_vggs_fully_connected_layers(tmp_path):
    vgg = timm.create_model("vgg11", num_classes=0)
    torch.save(vgg.state_dict(), tmp_path / "vgg11.pth")
    net = REGISTRY.create("segnet", "deeplab-largefov", encoder="vgg11").build(21, weights=str(tmp_path / "vgg11.pth"))
    assert net.eval()(torch.zeros(1, 3, 320, 320)).shape == (1, 21, 40, 40)
    assert net.fc6.dilation == (12, 12) and net.fc6.weight.shape == (1024, 512, 3, 3)
    torch.testing.assert_close(net.fc6.weight, vgg.pre_logits.fc1.weight[::4, :, ::3, ::3])
    torch.testing.assert_close(net.fc7.weight, vgg.pre_logits.fc2.weight[::4, ::4])
    torch.testing.assert_close(net.features[0].weight, vgg.features[0].weight)
    ccnn = REGISTRY.create("segnet", "deeplab-largefov", encoder="vgg11", fc6_kernel=4, fc6_dilation=4, channels=256).build(21)
    assert ccnn.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 21, 8, 8)


def batch(b: int = 4, n: int = 4, size: int = 12) -> SegBatch:
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(b, n - 1)
    labels[torch.arange(b), torch.arange(b) % (n - 1)] = 1  # one foreground class per image
    valid = torch.ones(b, size, size, dtype=torch.bool)
    valid[:, :, -3:] = False  # crop padding
    masks = torch.randint(0, n, (b, size, size), generator=g)
    masks[:, 0] = 255
    return SegBatch(torch.randn(b, 3, size, size, generator=g), labels, valid, masks)


@pytest.mark.parametrize("name", REGISTRY.names("objective"))
def test_objective_is_a_mean_over_images_with_gradients(name):
    objective = REGISTRY.create("objective", name)
    full = batch()
    logits = torch.randn(4, 4, 6, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss = objective(logits, full)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # two halves of the batch (two torchrun ranks) average to the whole batch's loss
    halves = [objective(logits[i : i + 2].detach(), SegBatch(full.images[i : i + 2], full.image_labels[i : i + 2],
                                                             full.valid[i : i + 2], full.masks[i : i + 2])) for i in (0, 2)]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, loss.detach())
