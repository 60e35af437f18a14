"""Trainers: mixed precision with torch.amp (bf16 on CPU, fp16 or bf16 on CUDA), picked by --amp, and
fp64 for checking numerics. The plain fp32 trainer is the core's own."""
from zoo import Trainer, hookimpl


@hookimpl
def trainers():
    return [
        Trainer("fp64", "zoo_trainers.fp64:Fp64Trainer", "float64 throughout, to check numerics: rounding "
                "differences that fp32 training amplifies (see docs/distributed.md) stay near 1e-12"),
        Trainer("amp", "zoo_trainers.amp:AmpTrainer", "mixed precision: bf16 autocast on CPU; on CUDA bf16 where "
                "supported, else fp16 with a gradient scaler (options: dtype, channels_last, compile, device)",
                flag="amp"),
    ]
