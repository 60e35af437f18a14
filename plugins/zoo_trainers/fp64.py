"""float64 training: slow, but rounding no longer hides what a change computes differently."""
from __future__ import annotations

import torch

from zoo import BaseTrainer


class Fp64Trainer(BaseTrainer):
    precision = "fp64"

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return super().prepare(model.double())

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return super().prepare_input(x.double())
