"""The optimizer and schedule plugin (zoo_optim)."""
from __future__ import annotations

import pytest
import torch

import zoo
from zoo import RunConfig


def test_every_optimizer_and_schedule_builds_and_steps():
    registry = zoo.default_registry()
    names = [s.name for s in registry.items("opt") if "/" not in s.name] + ["timm/lamb", "timm/adamp", "timm/momentum"]
    for name in names:
        model = torch.nn.Linear(4, 2)
        before = model.weight.detach().clone()
        optimizer = registry.get("opt", name).load()(model.parameters(), lr=0.1, weight_decay=1e-4)
        model(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()
        assert not torch.equal(before, model.weight), name
    for spec in registry.items("sched"):
        factor = spec.load()(epochs=50)
        values = [factor(t / 2) for t in range(100)]
        assert all(0 <= v <= 1 for v in values) and values[0] > 0, spec.name


def test_multistep_reproduces_the_labs_learning_rates():
    factor = zoo.default_registry().get("sched", "multistep").load()(epochs=50, milestones=[20, 30, 40], gamma=0.1)
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.005)
    reference = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[20, 30, 40], gamma=0.1)
    for epoch in range(50):
        expected = optimizer.param_groups[0]["lr"]
        for within in (0.0, 0.5, 0.99):
            assert 0.005 * factor(epoch + within) == pytest.approx(expected, rel=1e-9), epoch
        optimizer.step()
        reference.step()
    assert 0.005 * factor(45) == pytest.approx(5e-6)


@pytest.mark.parametrize("opt, lr", [("sgd-nesterov", 0.05), ("adam", 1e-3), ("timm/lion", 1e-4), ("timm/sgdp", 0.05)])
def test_each_optimizer_brings_its_learning_rate_unless_one_is_given(opt, lr):
    from zoo.training.config import with_defaults

    registry = zoo.default_registry()
    assert with_defaults(RunConfig(opt=opt), registry).lr == lr
    assert with_defaults(RunConfig(opt=opt, lr=0.3), registry).lr == 0.3
