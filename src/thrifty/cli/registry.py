"""`thrifty registry register|list|show|promote|rollback`: registered model versions and the champion alias."""

from __future__ import annotations

import json
from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Family, Option, command

Store = Annotated[Optional[str], Option(words.REGISTRY, metavar="URI")]
Name = Annotated[str, Arg("the registered model's name", metavar="NAME")]
Json = Annotated[bool, Option("print JSON", flag="--json")]


@command("add a finished run's model as a new version of NAME")
def register(
    model_dir: Annotated[str, Arg(words.MODEL_DIR, metavar="RUN_DIR")],
    *,
    name: Annotated[str, Option("the registered model's name, e.g. sst2-sentiment", required=True)],
    description: Annotated[Optional[str], Option("the version's description (default: task, strategy, data and "
                                                 "metrics)")] = None,
    promote: Annotated[bool, Option("also make it the champion")] = False,
    reason: Annotated[str, Option("why (recorded with the alias move when --promote)")] = "",
    registry: Store = None,
) -> int:
    from thrifty.registry.report import metric_text, move_line
    from thrifty.registry.store import Registry

    store = Registry(registry, create=True)
    version, new = store.register(model_dir, name, description=description)
    print(f"{'registered' if new else 'already registered:'} {version.uri} ({version.task}, "
          f"{len(version.labels)} labels{metric_text(version.metrics)}) in {store.uri}")
    if promote:
        move = store.promote(name, version.version, reason=reason or "registered with --promote")
        print(move_line(name, move, who=False))
    elif new:
        print(f"make it live: thrifty registry promote {name} {version.version}")
    return 0


@command("registered models, their versions and aliases")
def list_models(*, as_json: Json = False, registry: Store = None) -> int:
    from thrifty.registry.report import models_table
    from thrifty.registry.store import Registry

    store = Registry(registry, create=False)
    models = store.names()
    if as_json:
        print(json.dumps(models, indent=2))
    elif not models:
        print(f"no registered models in {store.uri}")
    else:
        print("\n".join(models_table(models)))
    return 0


@command("a registered model's versions and every alias move")
def show(name: Name, *, as_json: Json = False, registry: Store = None) -> int:
    from thrifty.registry.report import model_lines
    from thrifty.registry.store import Registry

    shown = Registry(registry, create=False).show(name)
    print(json.dumps(shown, indent=2) if as_json else "\n".join(model_lines(shown)))
    return 0


@command("point the champion alias (or --alias) at VERSION")
def promote(
    name: Name,
    version: Annotated[int, Arg("the version to point the alias at", metavar="VERSION")],
    *,
    alias: Annotated[str, Option("the alias to move")] = "champion",
    reason: Annotated[str, Option("why; recorded with the move, with who moved it")] = "",
    registry: Store = None,
) -> int:
    from thrifty.registry.report import move_line
    from thrifty.registry.store import Registry

    print(move_line(name, Registry(registry, create=False).promote(name, version, alias=alias, reason=reason)))
    return 0


@command("move the champion back to the version before")
def rollback(
    name: Name,
    *,
    alias: Annotated[str, Option("the alias to move back")] = "champion",
    reason: Annotated[str, Option("why; recorded with the move")] = "",
    registry: Store = None,
) -> int:
    from thrifty.registry.report import move_line
    from thrifty.registry.store import Registry

    print(move_line(name, Registry(registry, create=False).rollback(name, alias=alias, reason=reason)))
    return 0


REGISTRY = Family("registered model versions and the champion alias (MLflow Model Registry; docs/registry.md)",
                  {"register": register, "list": list_models, "show": show, "promote": promote, "rollback": rollback})
