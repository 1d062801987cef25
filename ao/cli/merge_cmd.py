"""``ao merge SESSION``: the same pinned, safe merge ``auto-merge`` does, by hand, for every SCM (``ao.merging``)."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, examples, load_config, print_json

EXAMPLES = examples(
    ("ao merge app-3", "observe app-3's PR now; merge it if every criterion holds"),
    ("ao merge app-3 --dry-run", "only show the criteria"),
    ("ao merge app-3 --method rebase --json", ""),
)


def _print(result: Any, missing_only: bool = False) -> None:
    head = result.head_sha[:7] if result.head_sha else "-"
    print(f"{result.session}: PR #{result.pr_number} at {head}  {result.pr_url}" if result.pr_number
          else f"{result.session}: no open PR")
    for c in result.criteria:
        if not missing_only or not c.ok:
            print(f"  {'ok ' if c.ok else 'NO '} {c.name:<11} {c.detail}")


def register(root: typer.Typer) -> None:
    @root.command(epilog=EXAMPLES)
    def merge(
        ctx: typer.Context,
        session: Annotated[str, typer.Argument(metavar="SESSION", help="Session id, e.g. app-3.",
                                               show_default=False)],
        method: Annotated[Optional[str], typer.Option(
            "--method", metavar="METHOD", help="squash, merge or rebase (default: the project's scm.mergeMethod).")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the criteria; merge nothing.")] = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Merge a session's PR now, with its observed head pinned, only if it is mergeable.

        Observes the PR afresh and checks every criterion on its head commit: open, not a draft, approved with no outstanding request for changes, CI passed or provably none, no conflicts, up to date where the base requires it, not blocked. Otherwise it refuses, naming what is missing (exit 1)."""  # noqa: E501 (one paragraph)
        from ao.merging import NotMergeable, merge_session

        cfg = load_config(ctx, config)
        try:
            result = merge_session(cfg, session, method=method, dry_run=dry_run)
        except NotMergeable as exc:
            if json:
                print_json({"session": session, "merged": False, "error": str(exc),
                            "missing": [c.to_dict() for c in exc.missing]})
                raise typer.Exit(1) from None
            raise
        if json:
            print_json(result.to_dict())
        else:
            _print(result)
            if result.merged:
                print(f"merged: {result.sha[:10] or 'done'}")
            elif dry_run:
                ok = all(c.ok for c in result.criteria)
                print("mergeable: yes (not merged: --dry-run)" if ok else "mergeable: no")
        if dry_run and not all(c.ok for c in result.criteria):
            raise typer.Exit(1)
        sys.stdout.flush()
