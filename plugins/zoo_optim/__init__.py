"""Optimizers (sgd, sgd-momentum, sgd-nesterov, adam, adamw, rmsprop, timm's catalogue) and schedules."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from zoo import Optimizer, Scheduler, hookimpl

_O = "zoo_optim.optim:"
_S = "zoo_optim.schedules:"


def timm_optimizer_names() -> list[str]:
    """The names in timm's optimizer registry, read from its source without importing torch."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return []
    source = Path(next(iter(spec.submodule_search_locations))) / "optim" / "_optim_factory.py"
    if not source.is_file():
        return []
    names = set(re.findall(r"\bname\s*=\s*'(\w+)'", source.read_text(encoding="utf-8")))
    return sorted(n for n in names if not n.startswith(UNSUPPORTED_TIMM_PREFIXES))


# bitsandbytes and apex optimizers need CUDA and packages zoo does not install; adahessian needs a
# second-order backward pass (create_graph=True) that zoo's trainers do not make.
UNSUPPORTED_TIMM_PREFIXES = ("bnb", "fused", "adahessian")


@hookimpl
def optimizers():
    return [
        Optimizer("sgd", _O + "sgd", "plain SGD, no momentum", options={"momentum": 0.0}),
        Optimizer("sgd-momentum", _O + "sgd", "SGD with momentum 0.9 (the lab's 'SGDM')", param="momentum",
                  options={"momentum": 0.9}),
        Optimizer("sgd-nesterov", _O + "sgd", "SGD with Nesterov momentum 0.9", param="momentum",
                  options={"momentum": 0.9, "nesterov": True}, default=True),
        Optimizer("adam", _O + "adam", "Adam (weight decay added to the gradient, L2)", lr=1e-3),
        Optimizer("adamw", _O + "adamw", "AdamW (decoupled weight decay)", lr=1e-3),
        Optimizer("rmsprop", _O + "rmsprop", "RMSprop, alpha 0.99", lr=1e-3),
    ] + [
        Optimizer(f"timm/{name}", _O + "timm_optimizer", "timm optimizer", options={"opt": name},
                  lr=recommended_lr(name))
        for name in timm_optimizer_names()
    ]


def recommended_lr(name: str) -> float | None:
    """The learning rate each family's papers train with: Lion 3-10x below AdamW, the Adam family 1e-3;
    None (zoo's SGD default) for the rest."""
    if "lion" in name:
        return 1e-4
    if any(family in name for family in ("adam", "lamb", "adopt", "nadam", "adan")):
        return 1e-3
    return None


@hookimpl
def schedulers():
    return [
        Scheduler("constant", _S + "constant", "the same learning rate throughout"),
        Scheduler("multistep", _S + "multistep", "multistep=[20,30,40]: x gamma (0.1) at each milestone epoch",
                  param="milestones"),
        Scheduler("step", _S + "step", "step=N: x gamma (0.1) every N epochs (30)", param="step_size"),
        Scheduler("cosine", _S + "cosine", "cosine decay to zero over the run", default=True),
        Scheduler("onecycle", _S + "onecycle", "onecycle=P: rise for the first P of the run (0.25), then "
                  "cosine decay", param="pct_start"),
    ]
