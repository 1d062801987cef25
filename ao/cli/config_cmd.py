"""``ao config init|validate|show|schema``."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, ProjectOption, load_config, print_json
from ao.errors import AoError

app = typer.Typer(help="Create, check and inspect the configuration.", no_args_is_help=True)


@app.command()
def init(
    path: Annotated[Optional[Path], typer.Argument(help="Where to write it (default ./agent-orchestrator.yaml).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config for the repository in the current directory."""
    from ao import config, paths
    from ao.ledger import atomic_write

    target = path or Path("agent-orchestrator.yaml")
    if target.is_dir():
        target = target / "agent-orchestrator.yaml"
    if target.exists() and not force:
        raise AoError(f"{target} already exists; use --force to overwrite it")
    folder = target.resolve().parent
    project = re.sub(r"[^A-Za-z0-9_-]+", "-", folder.name).strip("-") or "my-project"
    text = (paths.data_folder("templates") / "config" / "agent-orchestrator.yaml").read_text(encoding="utf-8")
    text = text.replace("__PROJECT__", project)
    atomic_write(target, text)
    config.load(target)  # the starter must always validate
    print(f"wrote {target}; check it with: ao config validate {target}")


@app.command()
def validate(
    ctx: typer.Context,
    file: Annotated[Optional[Path], typer.Argument(help="Config file to check (default: the discovered one).",
                                                   show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Check a config: schema, semantics, rule files and message templates. Every problem at once."""
    from ao import config as config_mod

    cfg = config_mod.load(file or config or (ctx.obj or {}).get("config"))
    reactions = sum(len(p.reactions) for p in cfg.projects.values())
    print(f"{cfg.file}: ok ({len(cfg.projects)} project{'s' if len(cfg.projects) != 1 else ''}, "
          f"{reactions} reactions)")


@app.command()
def show(ctx: typer.Context, project: ProjectOption = None, json: JsonOption = False,
         config: ConfigOption = None) -> None:
    """Print the effective configuration (defaults and overrides merged; environment values redacted)."""
    import yaml

    from ao import config as config_mod

    cfg = load_config(ctx, config)
    data = config_mod.effective(cfg, project)
    if json:
        print_json(data)
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editors: add `$schema:` to your file)."""
    from ao import paths

    sys.stdout.write((paths.data_folder("schemas") / "config.schema.json").read_text(encoding="utf-8"))
