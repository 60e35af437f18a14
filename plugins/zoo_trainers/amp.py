"""Mixed precision with torch.amp: autocast for the forward pass, loss scaling only for CUDA fp16."""
from __future__ import annotations

from typing import Any

import torch

from zoo import BaseTrainer, UserError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_has_native_bf16(device: torch.device) -> bool:
    """bf16 tensor cores (Ampere, compute capability 8.0, and later) on the trainer's own GPU; older
    GPUs (V100, T4) emulate bf16, slower than fp16 with a scaler."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


class AmpTrainer(BaseTrainer):
    def __init__(self, device: str | None = None, dtype: str | None = None, channels_last: bool | None = None,
                 compile: bool = False):
        super().__init__(device, channels_last, compile)
        if dtype is None:
            dtype = "bf16" if self.device.type != "cuda" or cuda_has_native_bf16(self.device) else "fp16"
        if dtype not in DTYPES:
            raise UserError(f"unknown amp dtype {dtype!r}; choose bf16 or fp16")
        if dtype == "fp16" and self.device.type == "cpu":
            raise UserError("fp16 autocast is for CUDA; on a CPU use bf16")
        # A CPU without native bf16 (AVX512-BF16/AMX) emulates it, slower than fp32: stay in fp32 there.
        self.enabled = self.device.type != "cpu" or cpu_has_fast_bf16()
        self.precision = dtype if self.enabled else "fp32 (this CPU has no fast bf16)"
        self.dtype = DTYPES[dtype]
        self.scaler = torch.amp.GradScaler("cuda") if dtype == "fp16" else None
        self.skips_overflow = self.scaler is not None

    def default_channels_last(self) -> bool:
        return True  # bf16/fp16 convolutions want NHWC on CPUs (oneDNN) and GPUs (tensor cores)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.enabled)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            super().backward_step(loss, optimizer)
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
