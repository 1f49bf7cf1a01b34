"""The registry's contents as text for a terminal: `thrifty registry list` and `show`, and the lines about a version
or an alias move."""

from __future__ import annotations

from typing import Any


def metric_text(metrics: dict) -> str:
    """"; validation accuracy 0.9100, macro_f1 0.9000" (the headline validation figures), or "" without them."""
    validation = (metrics or {}).get("validation") or {}
    shown = [f"{k} {v:.4f}" for k, v in validation.items() if k in ("accuracy", "macro_f1", "f1") and isinstance(v, float)]
    return f"; validation {', '.join(shown)}" if shown else ""


def models_table(models: list[dict[str, Any]]) -> list[str]:
    """One line per registered model: name, task, number of labels and versions, aliases."""
    lines = [f"{'name':<28} {'task':<20} {'labels':>6} {'versions':>8}  aliases"]
    for m in models:
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(m["aliases"].items())) or "-"
        lines.append(f"{m['name']:<28} {m['task'] or '?':<20} {len(m['labels']):>6} {m['versions']:>8}  {aliases}")
    return lines


def model_lines(shown: dict[str, Any]) -> list[str]:
    """A registered model (Registry.show): its labels and aliases, each version, every alias move."""
    aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(shown["aliases"].items())) or "none"
    lines = [f"{shown['name']}: {shown['task']}, labels {', '.join(map(str, shown['labels'][:10]))}"
             f"{' ...' if len(shown['labels']) > 10 else ''}; aliases: {aliases}  ({shown['store']})"]
    for v in shown["versions"]:
        tags = f" [{', '.join(v['aliases'])}]" if v["aliases"] else ""
        parent = f", parent v{v['parent_version']}" if v["parent_version"] else ""
        lines.append(f"  v{v['version']}{tags} {v['created'][:19]}: {v['strategy']} from {v['base_model']}, "
                     f"{v['train_examples'] or 0} examples (data {(v['data_fingerprint'] or '-')[:12]}){parent}"
                     f"{metric_text(v['metrics'])}")
    for m in shown["moves"]:
        lines.append(f"  move {m['at'][:19]} {m['alias']}: {'v' + str(m['from']) if m['from'] else '-'} -> v{m['to']} "
                     f"by {m['by']}{': ' + m['reason'] if m['reason'] else ''}")
    return lines


def move_line(name: str, move: Any, who: bool = True) -> str:
    """NAME@ALIAS: version FROM -> TO, with who moved it and why."""
    line = f"{name}@{move.alias}: version {move.previous or '-'} -> {move.version}"
    return line + (f" (by {move.by}{'; ' + move.reason if move.reason else ''})" if who else "")
