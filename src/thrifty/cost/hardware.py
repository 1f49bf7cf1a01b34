"""Hardware profiles and prices: turning seconds and FLOPs into time and money on a given machine.

The profiles live in ``resources/hardware.yaml`` (editable, each price with its source and date); the
config's ``cost`` section picks one (``auto`` = the machine thrifty runs on) and may override its price and
efficiency. On this machine time is calibrated, not predicted; on another one (``--hardware a10g``) a
training step takes the longer of its FLOPs at ``peak x efficiency`` and the host's per-layer launch time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from thrifty.errors import ConfigError
from thrifty.resources import hardware_names as profile_names
from thrifty.resources import hardware_profiles, unknown_hardware_message


@dataclass(frozen=True)
class Hardware:
    name: str
    kind: str  # "cpu" or "gpu"
    description: str
    price_per_hour: Optional[float]  # per device (gpu) or per core (cpu); None = unknown
    peak_tflops: Optional[float]
    memory_gib: Optional[float]
    efficiency: float
    host_ms_per_layer: float
    instance: str
    source: str
    as_of: str
    cores: int = 1  # cpu: the cores of the machine the price covers

    @property
    def machine_price_per_hour(self) -> Optional[float]:
        """What an hour of the whole machine costs: a GPU's price, or the price of all the cores."""
        if self.price_per_hour is None:
            return None
        return self.price_per_hour * (self.cores if self.kind == "cpu" else 1)

    def train_step_seconds(self, flops: float, layers: int) -> float:
        """A step on a GPU: compute-bound at peak x efficiency, but never faster than the host can launch it."""
        compute = flops / (self.peak_tflops * 1e12 * self.efficiency)
        return max(compute, layers * self.host_ms_per_layer / 1000)

    def forward_seconds(self, flops: float, layers: int) -> float:
        return max(flops / (self.peak_tflops * 1e12 * self.efficiency), layers * self.host_ms_per_layer / 3000)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "price_per_hour": self.machine_price_per_hour, "cores": self.cores if self.kind == "cpu" else None,
                "peak_tflops": self.peak_tflops, "memory_gib": self.memory_gib,
                "efficiency": self.efficiency if self.kind == "gpu" else None,
                "instance": self.instance, "source": self.source, "as_of": self.as_of}


def _this_machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _auto_name() -> str:
    """The profile of the machine thrifty runs on: its GPU's, matched by name, or `cpu`."""
    import torch

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0).lower()
        for name in profile_names():
            if name != "cpu" and name in device.replace(" ", ""):
                return name
    return "cpu"


def get_hardware(name: str = "auto", price_per_hour: Optional[float] = None,
                 efficiency: Optional[float] = None) -> Hardware:
    """The named profile (``auto`` = this machine), with the config's overrides applied."""
    raw = hardware_profiles()
    wanted = _auto_name() if name == "auto" else name
    if wanted not in profile_names():
        raise ConfigError(unknown_hardware_message(wanted))
    entry, defaults = raw[wanted], raw.get("defaults", {})
    cores = _this_machine_cores() if entry["kind"] == "cpu" else 1
    per_unit = entry.get("price_per_hour")
    if price_per_hour is not None:  # the config's price is for the whole machine; a cpu profile keeps it per core
        per_unit = price_per_hour / cores
    return Hardware(
        name=wanted, kind=entry["kind"], description=entry.get("description", ""), price_per_hour=per_unit,
        peak_tflops=entry.get("peak_tflops"), memory_gib=entry.get("memory_gib"),
        efficiency=efficiency if efficiency is not None else entry.get("efficiency", defaults.get("efficiency", 0.4)),
        host_ms_per_layer=entry.get("host_ms_per_layer", defaults.get("host_ms_per_layer", 5.0)),
        instance=entry.get("instance", ""), source=entry.get("source", ""), as_of=str(entry.get("as_of", "")),
        cores=cores,
    )


def hardware_for(cost_config) -> Hardware:
    """The profile a config asks for (its `cost` section)."""
    return get_hardware(cost_config.hardware, cost_config.price_per_hour, cost_config.efficiency)


def price(seconds: float, hardware: Hardware) -> Optional[float]:
    per_hour = hardware.machine_price_per_hour
    return None if per_hour is None else seconds / 3600 * per_hour
