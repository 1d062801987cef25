"""``ao review SESSION --approve | --request-changes TEXT | --comment TEXT | --close | --list``: the reviewer's
side of the local SCM. On GitHub people review on GitHub; this is the stand-in for it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, SessionArg, examples, load_config, print_json
from ao.cli.output import with_iso_times
from ao.errors import AoError, UsageError


def _scm(config: Any, session_id: str) -> tuple[Any, Any]:
    """(the session, the local SCM of its project); AoError when the project does not use the local SCM."""
    from ao.plugins.scm import context_for
    from ao.plugins.scm.local import plugin
    from ao.sessions import Sessions

    session, project = Sessions(config).find(session_id)
    name = (project.scm or {}).get("plugin", "local")
    if name != "local":
        raise AoError(f"ao review is for the local SCM; project '{project.id}' uses '{name}': review on GitHub")
    if not session.branch:
        raise AoError(f"session {session.id} has no PR yet: it has no branch")
    return session, plugin(context_for(config, project))


def _when(at: Any) -> str:
    try:
        return datetime.fromtimestamp(int(at)).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _print_record(session: Any, rec: dict[str, Any] | None) -> None:
    if rec is None:
        print(f"{session.id}: {session.branch} has no local PR yet")
        return
    state = "merged" if rec.get("merged") else "closed" if rec.get("closed") else "open"
    print(f"{session.id}: local PR #{rec['number']} ({session.branch}), {state}, head {rec.get('head_sha', '')[:10]}")
    items = [("review", r) for r in rec.get("reviews") or []] + [("note", n) for n in rec.get("notes") or []]
    items.sort(key=lambda item: item[1].get("at", 0))
    for what, item in items:
        kind = item.get("kind", "note").replace("_", " ") if what == "review" else "note"
        on = f" on {item['head_sha'][:10]}" if item.get("head_sha") else ""
        print(f"  {_when(item.get('at'))}  {item.get('author', '')}: {kind}{on} [{item.get('id', '')}]")
        for line in (item.get("body") or "").splitlines():
            print(f"    {line}")
    if not items:
        print("  no reviews yet")


def register(root: typer.Typer) -> None:
    @root.command(epilog=examples(
        ("ao review app-3 --approve", ""),
        ("ao review app-3 --request-changes \"Add a test for the empty list\"", "the agent is asked to change it"),
        ("ao review app-3 --comment \"Nit: the name could be clearer\"", "the agent hears a comment, not a request"),
        ("ao review app-3 --list", "the PR's reviews and ao's notes"),
    ))
    def review(
        ctx: typer.Context,
        session: SessionArg,
        approve: Annotated[bool, typer.Option("--approve", help="Approve the session's PR.")] = False,
        request_changes: Annotated[Optional[str], typer.Option(
            "--request-changes", metavar="TEXT", help="Request changes (status changes_requested); the text goes "
            "to the agent as a trusted review comment to address.", show_default=False)] = None,
        comment: Annotated[Optional[str], typer.Option(
            "--comment", metavar="TEXT", help="Comment without a verdict: the review stays pending, and the "
            "agent is told it is a comment, not a request for changes.", show_default=False)] = None,
        close: Annotated[bool, typer.Option("--close", help="Close the PR without merging.")] = False,
        list_: Annotated[bool, typer.Option("--list", help="Show the PR's reviews and notes.")] = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Review a session's PR on the local SCM: approve it, request changes, comment, or close it.

        Exactly one of --approve, --request-changes, --comment, --close, --list. A review applies to the branch
        as it is on origin now. Comments (from --request-changes or --comment) stay unresolved until an
        --approve after them. On GitHub, review on GitHub instead.
        """
        chosen = [flag for flag, given in (("--approve", approve), ("--request-changes", request_changes is not None),
                                           ("--comment", comment is not None), ("--close", close),
                                           ("--list", list_)) if given]
        if len(chosen) != 1:
            got = f"got {' and '.join(chosen)}" if chosen else "got none"
            raise UsageError(f"give exactly one of --approve, --request-changes TEXT, --comment TEXT, --close, "
                             f"--list ({got})")
        for flag, text in (("--request-changes", request_changes), ("--comment", comment)):
            if text is not None and not text.strip():
                raise UsageError(f"{flag} needs some text")
        found, scm = _scm(load_config(ctx, config), session)
        branch = found.branch
        if list_:
            rec = scm.record(branch)
            if json:
                print_json(with_iso_times({"session": found.id, "branch": branch, "pr": rec}))
            else:
                _print_record(found, rec)
            return
        if close:
            done = scm.close(branch)
            line = f"{found.id}: closed local PR #{done['number']} ({branch})"
        else:
            kind, text = (("approve", "") if approve else ("request_changes", request_changes or "")
                          if request_changes is not None else ("comment", comment or ""))
            done = scm.review(branch, kind, text)
            what = {"approve": "approved", "request_changes": "requested changes on",
                    "comment": "commented on"}[kind]
            line = f"{found.id}: {what} local PR #{done['number']} ({branch} at {done['head_sha'][:10]})"
        if json:
            print_json(with_iso_times({"session": found.id, **done}))
        else:
            print(line)
