"""The shared solver: learning-rate policies, Caffe's bias settings, iterations, accumulation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from wssbench.classifier.training import TrainRecipe, recipe_dict
from wssbench.errors import UsageError
from wssbench.runtime import optim
from wssbench.segmentation.config import SegRecipe


def test_lr_policies_against_their_formulas():
    poly = TrainRecipe()
    assert optim.lr_factor(poly, 30, 100) == pytest.approx((1 - 0.3) ** 0.9)
    step = TrainRecipe(lr_policy="step", lr_step=2000, lr_gamma=0.1)  # EM-Adapt's solver: x0.1 every 2,000 of 6,000
    assert [optim.lr_factor(step, s, 6000) for s in (0, 1999, 2000, 4000, 5999)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])
    assert optim.lr_factor(TrainRecipe(lr_policy="fixed"), 99, 100) == 1.0
    with pytest.raises(UsageError, match="lr-step"):
        TrainRecipe(lr_policy="step")


def test_caffe_bias_groups():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 2, 1))
    body, head = list(net[0].named_parameters()), list(net[1].named_parameters())
    plain = optim.param_groups(body, head, SegRecipe(lr=1e-3))
    assert [(len(g["params"]), g["lr"], g["weight_decay"]) for g in plain] == [(2, 1e-3, 5e-4), (2, 1e-2, 5e-4)]
    caffe = optim.param_groups(body, head, SegRecipe(lr=1e-3, bias_lr_mult=2.0, bias_decay=False))
    # weights 1x, biases 2x without decay; the classifier 10x, its bias 20x (EM-Adapt's train.prototxt)
    assert [(g["lr"], g["weight_decay"]) for g in caffe] == [(1e-3, 5e-4), (2e-3, 0.0), (1e-2, 5e-4), (pytest.approx(2e-2), 0.0)]


def test_iterations_and_epochs():
    assert optim.total_steps(SegRecipe(epochs=3), 10) == (30, 3)
    assert optim.total_steps(SegRecipe(iterations=25), 10) == (25, 3)
    assert optim.total_steps(TrainRecipe(epochs=2, batch_size=1, crop=None, iter_size=4), 10) == (5, 2)
    with pytest.raises(UsageError, match="batches of 1"):
        SegRecipe(crop=None, batch_size=2)


def test_accumulating_two_batches_of_one_steps_as_one_batch_of_two():
    torch.manual_seed(0)
    x, y = torch.randn(2, 3), torch.randn(2, 1)
    a, b = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    one = TrainRecipe(lr=0.1)
    opt_a = optim.sgd(optim.param_groups(a.named_parameters(), [], one), one)
    optim.backward(scaler, ((a(x) - y) ** 2).mean(), one)
    optim.step(opt_a, scaler, [0.1], dataclasses.replace(one, lr_policy="fixed"), 0, 1)
    two = TrainRecipe(lr=0.1, iter_size=2, lr_policy="fixed")
    opt_b = optim.sgd(optim.param_groups(b.named_parameters(), [], two), two)
    for k in range(2):
        optim.backward(scaler, ((b(x[k : k + 1]) - y[k : k + 1]) ** 2).mean(), two)
    optim.step(opt_b, scaler, [0.1], two, 0, 1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_solver_settings_at_their_defaults_leave_cache_keys_as_they_were():
    key = recipe_dict(TrainRecipe())
    assert not set(key) & set(optim.SOLVER_DEFAULTS) and "flip" not in key
    assert recipe_dict(TrainRecipe(iter_size=20))["iter_size"] == 20
