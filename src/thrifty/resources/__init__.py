"""Bundled files: a small CC BY 4.0 Banking77 sample (so the default job runs without ../shared), the model
catalog and the hardware profiles. Reading them needs neither torch nor any other thrifty package."""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

HARDWARE_FILE = "hardware.yaml"


@lru_cache(maxsize=1)
def hardware_profiles() -> dict[str, Any]:
    """The raw hardware table (resources/hardware.yaml), `defaults` entry included."""
    text = resources.files("thrifty.resources").joinpath(HARDWARE_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def hardware_names() -> list[str]:
    return [name for name in hardware_profiles() if name != "defaults"]


def unknown_hardware_message(name: str) -> str:
    """One line for a profile name that is not in the table, with the closest known one."""
    close = difflib.get_close_matches(name, hardware_names(), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (f"unknown hardware profile '{name}'{hint}; known: {', '.join(hardware_names())}, or auto "
            f"(this machine); add one to thrifty/resources/{HARDWARE_FILE}")
