"""Energy and CO2 of a run, measured by CodeCarbon when it is installed (the `energy` extra).

CodeCarbon reads the CPU's power from RAPL where the kernel exposes it, and otherwise estimates it from the
CPU model's TDP; RAM power from its size; GPU power from NVML. The carbon intensity is that of the grid of
`cost.country` (ISO 3166 alpha-3), from CodeCarbon's offline tables: no network. Without CodeCarbon, or with
`tracking.energy: false`, runs report energy as null; nothing else changes.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Optional


class EnergyMeter:
    def __init__(self, country: str) -> None:
        self.country = country
        self._tracker = None

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("codecarbon") is not None

    def start(self) -> "EnergyMeter":
        if not self.available():
            return self
        try:
            from codecarbon import OfflineEmissionsTracker

            # After the import, which sets its logger to INFO: its INFO/WARNING lines would drown the run's log.
            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            self._tracker = OfflineEmissionsTracker(country_iso_code=self.country, save_to_file=False, log_level="error",
                                                    tracking_mode="process", measure_power_secs=15)
            self._tracker.start()
        except Exception:  # a measurement aid must never stop training
            self._tracker = None
        return self

    def stop(self) -> Optional[dict[str, Any]]:
        if self._tracker is None:
            return None
        try:
            co2_kg = self._tracker.stop()
            data = self._tracker.final_emissions_data
        except Exception:
            return None
        finally:
            self._tracker = None
        import codecarbon

        return {"kwh": data.energy_consumed, "co2_kg": co2_kg, "cpu_kwh": data.cpu_energy, "ram_kwh": data.ram_energy,
                "gpu_kwh": data.gpu_energy, "cpu_power_w": data.cpu_power, "country": self.country,
                "method": f"codecarbon {codecarbon.__version__} (process mode; RAPL if readable, else the CPU's TDP)"}
