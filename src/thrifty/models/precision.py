"""Which number format thrifty computes in, and why: one rule for training, estimates, calibration and prediction.

bf16 is worth it only where the hardware multiplies bf16 matrices itself: a CPU with AMX (Intel Xeon, 4th generation
on) or AVX512-BF16 (AMD EPYC Zen 4, some Xeons), where oneDNN uses them, or a GPU with bf16. There a bf16 matrix
product runs 2.2x (EPYC, 2 threads) to 3.5x (Xeon with AMX) the fp32 one; elsewhere bf16 is emulated and slower than
fp32. So:

- training (`train.precision: auto`): bf16 autocast where the hardware has it (fp32 master weights, fp32 optimizer
  state, fp32 LayerNorm/softmax/loss: only the matrix products run in bf16), unless the task's traits say bf16 costs
  it accuracy (`TaskTraits.trains_in_bf16`); fp32 elsewhere. A GPU without bf16 gets fp16.
- prediction (`--backend auto`, the default of predict, evaluate and serve): the bf16 weights where the hardware has
  them and the model's labels in bf16 agreed with fp32's on at least AGREEMENT_FLOOR of its validation labels
  (measured when training ended and recorded in the model folder); fp32 otherwise.

Every choice comes with its reason, which the run's log, metrics.json, evaluate's metrics and serve's start line show.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from thrifty.errors import ConfigError
from thrifty.traits import task_traits

AGREEMENT_FLOOR = 0.995  # the share of validation labels bf16 weights must give as fp32 does to serve by default
AGREEMENT_KEY = "bf16"  # where the model folder's manifest records that agreement


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), recorded with precision checks, calibrations and benchmarks."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_hardware(device: torch.device) -> Optional[str]:
    """The instructions that multiply bf16 matrices on `device` ("AMX", "AVX512-BF16", "GPU bf16"), or None where bf16
    would be emulated (slower than fp32)."""
    if device.type == "cuda":
        return "GPU bf16" if torch.cuda.is_bf16_supported() else None
    if device.type != "cpu":
        return None
    for probe, name in (("_is_amx_tile_supported", "AMX"), ("_is_avx512_bf16_supported", "AVX512-BF16")):
        if getattr(torch.cpu, probe, lambda: False)():
            return name
    return None


def has_fast_bf16(device: torch.device) -> bool:
    return bf16_hardware(device) is not None


@dataclass(frozen=True)
class Precision:
    """What a run computes in ("fp32", "bf16" or "fp16") and the reason, in words."""

    name: str
    reason: str

    @property
    def accelerate(self) -> str:
        """Accelerate's mixed_precision setting for it."""
        return "no" if self.name == "fp32" else self.name

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


def training_precision(wanted: str, device: torch.device, task: str) -> Precision:
    """The precision a run on `device` trains in when `train.precision` is `wanted`; refused with the fix where the
    device cannot run it."""
    hardware = bf16_hardware(device)
    if device.type != "cuda":
        if wanted == "fp16":
            raise ConfigError("train.precision=fp16 needs a GPU and this machine has none; use bf16 (on a CPU with AMX "
                              "or AVX512-BF16), fp32 or auto")
        if wanted == "bf16" and hardware is None:
            raise ConfigError("train.precision=bf16 needs bf16 instructions (AMX or AVX512-BF16) and this CPU has "
                              "none, so it would run slower than fp32; use fp32 (or auto)")
    if wanted == "fp32":
        return Precision("fp32", "asked for (train.precision: fp32)")
    if wanted in ("bf16", "fp16"):
        return Precision(wanted, f"asked for (train.precision: {wanted})")
    if device.type == "cuda" and hardware is None:
        return Precision("fp16", "auto: this GPU has no bf16")
    if hardware is None:
        return Precision("fp32", "auto: this CPU has no bf16 instructions (AMX or AVX512-BF16)")
    traits = task_traits(task)
    if not traits.trains_in_bf16:
        return Precision("fp32", f"auto: {hardware} is here, but {traits.name} keeps fp32 ({traits.bf16_note})")
    return Precision("bf16", f"auto: this {device.type.upper()} has {hardware}; bf16 matrix products, fp32 weights "
                             "and optimizer state")


def recorded_agreement(manifest: dict[str, Any]) -> Optional[dict[str, Any]]:
    return manifest.get(AGREEMENT_KEY) if isinstance(manifest.get(AGREEMENT_KEY), dict) else None


def prediction_backend(manifest: dict[str, Any], device: torch.device) -> tuple[str, str]:
    """The PyTorch backend `--backend auto` predicts with, and why: torch-bf16 where the hardware has bf16 and the
    model's recorded label agreement with fp32 reaches AGREEMENT_FLOOR; torch (fp32) otherwise."""
    hardware = bf16_hardware(device)
    if hardware is None:
        return "torch", f"fp32: this {device.type.upper()} has no bf16 instructions"
    record = recorded_agreement(manifest)
    if record is None or record.get("label_agreement") is None:
        return "torch", "fp32: the model folder records no bf16 agreement check (trained before it, or a model that writes text)"
    if (record.get("hardware") == "GPU bf16") != (device.type == "cuda"):
        return "torch", (f"fp32: the bf16 agreement was measured on {record.get('hardware')}, not on this "
                         f"{device.type.upper()}")
    agreement = float(record["label_agreement"])
    compared = f"{100 * agreement:.2f}% of {record.get('labels', '?')} validation labels as fp32"
    if agreement < AGREEMENT_FLOOR:
        return "torch", f"fp32: bf16 weights gave {compared} (below {100 * AGREEMENT_FLOOR:.1f}%)"
    return "torch-bf16", f"bf16 weights: {hardware} here, and they gave {compared}"
