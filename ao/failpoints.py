"""Failpoints: named steps where the crash-consistency harness kills ao on purpose (``kill -9`` of itself).

``AO_FAILPOINT=NAME`` (or ``NAME:N``, the N-th time that step is reached) in the environment of a process makes
:func:`hit` send SIGKILL to that process right after the step named NAME has been made durable. Unset (as in
any real use) :func:`hit` returns at once: one global lookup. The steps (``docs/lifecycle.md``):

- ``outbox.queued``     a notification was written to the outbox
- ``journal.decided``   an agent message, pause or kill was journalled as decided, before anything was executed
- ``cycle.decided``     every decision of the cycle, in every project, is durable and the ledgers saved
- ``journal.sending``   an agent message is about to be typed in
- ``agent.typed``       the agent message was typed in and confirmed, not yet journalled as sent
- ``journal.sent``      journalled as sent, not yet settled into the ledger
- ``outbox.delivered``  a notifier accepted a notification, not yet recorded in the outbox
- ``outbox.recorded``   the delivery was recorded
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("AO_FAILPOINT") or None
_counts: dict[str, int] = {}


def hit(name: str) -> None:
    if _SPEC is None:
        return
    wanted, _, nth = _SPEC.partition(":")
    if name != wanted:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
