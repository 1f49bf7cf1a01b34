"""`thrifty models`, `thrifty hardware` and `thrifty config`: what thrifty knows, and the resolved config."""

from __future__ import annotations

import json
from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Context, Option, command


@command("the model catalog: size, license, languages, published scores, offline here?")
def models(
    *,
    as_json: Annotated[bool, Option("print JSON (with every score's source)", flag="--json")] = False,
    offline: Annotated[bool, Option("only models whose weights are on this machine")] = False,
) -> int:
    from thrifty.models.catalog import catalog, format_catalog

    shown = [m.as_dict() for m in catalog()]
    if offline:
        shown = [m for m in shown if m["offline"]]
    print(json.dumps(shown, indent=2) if as_json else format_catalog(shown))
    return 0


@command("the hardware profiles: peak FLOP/s, memory, price and its source")
def hardware(*, as_json: Annotated[bool, Option(words.JSON, flag="--json")] = False) -> int:
    from thrifty.cost.hardware import get_hardware, profile_names

    profiles = [get_hardware(name).as_dict() for name in profile_names()]
    if as_json:
        print(json.dumps(profiles, indent=2))
        return 0
    print(f"{'name':<6} {'kind':<4} {'peak TFLOP/s':>12} {'memory GiB':>10} {'USD/hour':>9}  {'instance':<14} as of    source")
    for p in profiles:
        peak = "-" if p["peak_tflops"] is None else f"{p['peak_tflops']:g}"
        mem = "-" if p["memory_gib"] is None else f"{p['memory_gib']:g}"
        cost = "unknown" if p["price_per_hour"] is None else f"{p['price_per_hour']:.4g}"
        print(f"{p['name']:<6} {p['kind']:<4} {peak:>12} {mem:>10} {cost:>9}  {p['instance']:<14} {p['as_of']:<8} {p['source']}")
    print("cpu is priced for this machine's cores; edit thrifty/resources/hardware.yaml or set cost.price_per_hour")
    return 0


@command("print the resolved config (defaults <- CONFIG <- overrides) as YAML", config=True)
def config(config: Annotated[Optional[str], Arg(words.CONFIG)] = None, *, ctx: Context) -> int:
    import yaml

    from thrifty.config import load_config

    print(yaml.safe_dump(load_config(config, ctx.overrides).to_dict(), sort_keys=False), end="")
    return 0
