"""``ao config init|validate|show|schema``."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, ProjectOption, examples, load_config, print_json
from ao.errors import AoError

app = typer.Typer(help="Create, check and inspect the configuration.", no_args_is_help=True)


@app.command(epilog=examples(
    ("cd ~/src/my-app && ao config init", "a config at the top of the repository, for this repository"),
    ("ao config init ~/ao/my-app.yaml --repo ~/src/my-app", "somewhere else"),
))
def init(
    path: Annotated[Optional[Path], typer.Argument(metavar="PATH", help="Where to write it (default: "
                    "agent-orchestrator.yaml at the top of the repository).", show_default=False)] = None,
    repo: Annotated[Optional[Path], typer.Option("--repo", metavar="DIR", help="The repository to configure "
                    "(default: the one the current directory is in).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config for a git repository: its top folder, default branch and origin
    detected, and an agent that is installed here."""
    from ao import config, doctor, paths
    from ao.ledger import atomic_write

    where = (repo or Path.cwd()).expanduser()
    top = doctor.repo_top(where) if where.is_dir() else None
    if top is None:
        raise AoError(f"{where} is not in a git repository: ao runs agents on branches of a git repository. "
                      "Run `git init` there first (or give --repo DIR)")
    target = path.expanduser() if path else top / "agent-orchestrator.yaml"
    if target.is_dir():
        target = target / "agent-orchestrator.yaml"
    if target.exists() and not force:
        raise AoError(f"{target} already exists; use --force to overwrite it")
    found = _detect(top)
    project = re.sub(r"[^A-Za-z0-9_-]+", "-", top.name).strip("-") or "my-project"
    try:
        path_text = os.path.relpath(top, target.resolve().parent)
    except ValueError:  # another drive
        path_text = str(top)
    template = (paths.data_folder("templates") / "config" / "agent-orchestrator.yaml").read_text(encoding="utf-8")
    text = fill(template, {"__PROJECT__": project, "__PATH__": path_text, "__BRANCH__": found["branch"],
                           "__AGENT__": found["agent"], "__SCM__": found["scm"]})
    atomic_write(target, text)
    config.load(target)  # the starter must always validate
    print(f"wrote {target} for the repository {top}")
    for line in found["said"]:
        print(f"  {line}")
    print(f"next: `ao doctor` checks this machine; `ao issue new \"TITLE\"`, then `ao spawn {project} ID`")


COMMENT_COLUMN = 29  # where the starter's end-of-line comments begin


def _pad(value: str, width: int) -> str:
    return f"{value:<{width}}" if len(value) < width else value + " "


def fill(template: str, values: dict[str, str]) -> str:
    """The template with its placeholders filled; a value followed by a comment is padded to line them up."""
    lines = []
    for line in template.splitlines(keepends=True):
        for key, value in values.items():
            if key in line:
                at = line.index(key)
                followed = line[at + len(key):].startswith("#")
                line = line.replace(key, _pad(value, COMMENT_COLUMN - at) if followed else value)
        lines.append(line)
    return "".join(lines)


GITHUB_URL = re.compile(r"^(?:https?://github\.com/|git@github\.com:|ssh://git@github\.com/)([^/\s]+)/([^/\s]+?)"
                        r"(?:\.git)?/?$")


def _detect(top: Path) -> dict[str, Any]:
    """What init can tell about the repository: default branch, origin (GitHub or not), an installed agent."""
    import shutil

    from ao import doctor

    said: list[str] = []
    url = doctor.origin_url(top)
    branch = doctor.remote_default_branch(top) if url else ""
    if branch:
        said.append(f"default branch: {branch} (origin's HEAD)")
    else:
        branch = doctor.current_branch(top) or "main"
        said.append(f"default branch: {branch} (the branch checked out here; origin did not say)")
    github = GITHUB_URL.match(url)
    if github:
        repo = f"{github.group(1)}/{github.group(2)}"
        scm = f"    repo: {_pad(repo, 19)}# from origin: PRs, CI and issues on GitHub (GITHUB_TOKEN or gh auth login)\n"
        said.append(f"origin: {url} -> GitHub {repo} (`ao doctor` checks the token)")
    else:
        scm = ("    scm:\n"
               f"      plugin: local          # PRs are branches pushed to origin, merged by ao into {branch}\n"
               "      # ci: make test        # CI: this command, run on each pushed head commit\n"
               "    tracker:\n"
               "      plugin: local          # issues are markdown files: issues/<id>.md (`ao issue new TITLE`)\n")
        if url:
            said.append(f"origin: {url} -> the local SCM (PRs are branches pushed there)")
        else:
            said.append("origin: none! The local SCM needs one (PRs are branches pushed to it): "
                        "git init --bare ../origin.git && git remote add origin ../origin.git && "
                        f"git push -u origin {branch}")
    installed = [a for a, program in doctor.AGENT_PROGRAMS.items() if shutil.which(program)]
    if installed:
        agent = installed[0]
        also = f"; also installed: {', '.join(installed[1:])}" if installed[1:] else ""
        said.append(f"agent: {agent} (installed here{also})")
    else:
        agent = "claude-code"
        said.append("agent: none of claude-code, codex, aider or opencode is installed here! Install one "
                    f"({doctor.INSTALL_HINTS['claude-code']}), or use agent: command")
    return {"branch": branch, "scm": scm, "agent": agent, "said": said}


@app.command(epilog=examples(
    ("ao config validate", "the discovered config, and what spawn needs on this machine"),
    ("ao config validate prod.yaml --file-only", "only the file (a config meant for another machine)"),
))
def validate(
    ctx: typer.Context,
    file: Annotated[Optional[Path], typer.Argument(metavar="FILE", help="Config file to check (default: the "
                    "discovered one).", show_default=False)] = None,
    file_only: Annotated[bool, typer.Option("--file-only", help="Check only the file: not its project folders, "
                         "origin remotes or agent CLIs on this machine.")] = False,
    config: ConfigOption = None,
) -> None:
    """Check a config: schema, semantics, rule files and message templates, and (unless --file-only) that
    each project folder is the top of a git repository with an origin and its default branch, and that its
    agent CLI is installed. Every problem at once, as FILE:LINE:COL: message."""
    from ao import config as config_mod
    from ao import doctor
    from ao.yamlsrc import load_file

    path = config_mod.discover(file or config or (ctx.obj or {}).get("config"))
    cfg, problems = config_mod.check(load_file(path), path)
    if cfg is not None and not file_only:
        problems = sorted(set(problems + doctor.environment_problems(cfg)))
    for note in cfg.notes if cfg is not None else []:
        print(f"{note} [deprecated spelling, still accepted]", file=sys.stderr)
    if problems:
        raise AoError(problems=problems)
    assert cfg is not None
    reactions = sum(len(p.reactions) for p in cfg.projects.values())
    print(f"{cfg.file}: ok ({len(cfg.projects)} project{'s' if len(cfg.projects) != 1 else ''}, "
          f"{reactions} reactions" + (")" if file_only else "; folders, origins and agents checked here)"))


@app.command(epilog=examples(("ao config show", ""), ("ao config show -p my-app --json | jq .projects", "")))
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


@app.command(epilog=examples(("ao config schema > config.schema.json", "then `$schema: config.schema.json` in "
                                                                       "your config, for your editor")))
def schema() -> None:
    """Print the JSON Schema of the config file (for editors: add `$schema:` to your file)."""
    from ao import paths

    sys.stdout.write((paths.data_folder("schemas") / "config.schema.json").read_text(encoding="utf-8"))
