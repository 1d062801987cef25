#!/usr/bin/env python3
"""A scripted stand-in for a TUI coding agent, used by ao's tests and demo. Standalone: no ao imports.

Usage: python -m ao.scripted_agent --log FILE [--name NAME] [--script FILE]

On a terminal it behaves like a TUI agent: raw mode (so a message may be far longer than the 4095 bytes a
canonical-mode line can hold), bracketed paste enabled (a multi-line paste is one message), typed input
echoed, C-u clears the input line, Backspace deletes, C-c clears, C-d on an empty line quits. A message is
everything typed or pasted up to an Enter (CR or LF) outside a bracketed paste. On a pipe or fifo (the process
runtime) there is no echo, and each line is a message (bracketed-paste markers are still honoured).

Every non-empty message is appended to the --log file as one JSON line {"n", "text", "len" (UTF-8 bytes),
"at" (epoch s), "name"} (flushed and fsynced before the reply), then the agent prints
``received <n>: <len> bytes`` and a new ``agent> `` prompt. Messages that start with a directive also act:

  !ask          print "Do you want to proceed? (y/n) " and wait; the next message is the answer
  !exit [code]  print "bye" and exit with that code (default 0)
  !sh CMD       run CMD with the shell in the current folder and print its output and exit status
  !sleep S      print "working", stay busy (not reading input) for S seconds, then print "done"

With ``--script FILE`` (a JSON list of ``{"when": REGEX, "run": SHELL}``), each message is also matched
against the rules in order and the first match's command runs in the current folder, with the message on
stdin (``ao demo`` scripts its agents this way: commit and push on the prompt, fix on a CI failure, ...).
A rule with ``"once": true`` fires for one message only.
"""

from __future__ import annotations

import argparse
import json
import re
import os
import signal
import subprocess
import sys
import time

PROMPT = "agent> "
PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"
CR, LF, ESC = 0x0D, 0x0A, 0x1B


def write(text: str | bytes) -> None:
    """Unbuffered output (the pane or log must show it at once); loops because writes may be partial."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    while data:
        data = data[os.write(1, data):]


class Agent:
    def __init__(self, log: str, name: str, tty: bool, script: list[dict] | None = None) -> None:
        self.log, self.name, self.echo = log, name, tty
        self.script = list(script or [])
        try:  # a restarted agent goes on counting, so "exactly once" stays checkable across restarts
            with open(log, encoding="utf-8") as f:
                self.n = sum(1 for line in f if line.strip())
        except FileNotFoundError:
            self.n = 0
        self.pending = bytearray()   # the input line being typed or pasted
        self.esc = bytearray()       # an escape sequence being read
        self.in_paste = False
        self.after_cr = False        # a LF right after a CR is part of the same line end
        self.asking = False

    def feed(self, data: bytes) -> None:
        for b in data:
            self.byte(b)

    def byte(self, b: int) -> None:
        if self.esc:
            self.esc.append(b)
            if len(self.esc) == 2 and b != ord("["):
                self.esc.clear()                 # ESC x (Alt+x): ignored
            elif len(self.esc) > 2 and 0x40 <= b <= 0x7E:
                seq = bytes(self.esc)
                self.esc.clear()
                if seq == PASTE_START:
                    self.in_paste = True
                elif seq == PASTE_END:
                    self.in_paste = False        # other CSI sequences (arrows, ...) are ignored
            elif len(self.esc) > 32:
                self.esc.clear()
            return
        if b == ESC:
            self.esc.append(b)
            return
        crlf = b == LF and self.after_cr
        self.after_cr = b == CR
        if crlf:
            return
        if self.in_paste:
            if b in (CR, LF):
                self.pending += b"\n"
                self.show(b"\n")
            elif b >= 0x20 or b == 0x09:
                self.pending.append(b)
                self.show(bytes([b]))
            return
        if b in (CR, LF):
            self.submit()
        elif b == 0x15:                          # C-u: discard the input line
            self.pending.clear()
            self.show(b"\r\x1b[K" + PROMPT.encode())
        elif b in (0x7F, 0x08):                  # Backspace: drop one UTF-8 character
            while self.pending and (self.pending[-1] & 0xC0) == 0x80:
                self.pending.pop()
            if self.pending:
                self.pending.pop()
                self.show(b"\b \b")
        elif b == 0x03:                          # C-c: clear, like most agents
            self.pending.clear()
            self.show(b"^C\n" + PROMPT.encode())
        elif b == 0x04 and not self.pending:     # C-d on an empty line: quit
            raise SystemExit(0)
        elif b >= 0x20 or b == 0x09:
            self.pending.append(b)
            self.show(bytes([b]))

    def show(self, data: bytes) -> None:
        if self.echo:
            write(data)

    def submit(self) -> None:
        text = self.pending.decode("utf-8", "replace")
        self.pending.clear()
        if self.echo:
            write("\n")
        if not text:
            write(PROMPT)
            return
        self.n += 1
        size = len(text.encode("utf-8"))
        record = {"n": self.n, "text": text, "len": size, "at": time.time(), "name": self.name}
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        write(f"received {self.n}: {size} bytes\n")
        if self.asking:
            self.asking = False
            write("proceeding\n" if text.strip().lower().startswith("y") else "not proceeding\n")
        elif self.directive(text):
            return
        else:
            self.scripted(text)
        write(PROMPT)

    def scripted(self, text: str) -> None:
        """Run the first script rule whose regex matches the message."""
        for rule in self.script:
            if re.search(rule["when"], text):
                if rule.get("once"):
                    self.script.remove(rule)
                write(f"running: {rule.get('name', rule['run'])}\n")
                r = subprocess.run(rule["run"], check=False, shell=True, input=text.encode(), capture_output=True)
                write(r.stdout + r.stderr)
                write(f"[exit {r.returncode}]\n")
                return

    def directive(self, text: str) -> bool:
        """Act on a leading directive; True when the agent now waits for something other than a prompt."""
        word, _, rest = text.partition(" ")
        if word == "!ask":
            self.asking = True
            write("Do you want to proceed? (y/n) ")
            return True
        if word == "!exit":
            write("bye\n")
            code = rest.strip()
            raise SystemExit(int(code) if code.lstrip("-").isdigit() else 0)
        if word == "!sh":
            r = subprocess.run(rest, check=False, shell=True, stdin=subprocess.DEVNULL, capture_output=True)
            write(r.stdout + r.stderr)
            write(f"[exit {r.returncode}]\n")
        elif word == "!sleep":
            write("working\n")
            time.sleep(float(rest.strip() or 1))
            write("done\n")
        return False


def raw_mode(fd: int) -> list:
    """Raw input (no line editing, no echo, no signals, CR kept as CR) but normal output (\\n -> CR LF)."""
    import termios

    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON | termios.INLCR)
    mode[2] = (mode[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSAFLUSH, mode)
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", required=True, help="append one JSON line per received message here")
    parser.add_argument("--name", default="agent")
    parser.add_argument("--script", help="JSON rules: [{\"when\": REGEX, \"run\": SHELL}, ...]")
    args = parser.parse_args(argv)
    script = None
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = json.load(f)

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through `finally`, so the terminal is restored

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    tty = os.isatty(0)
    saved = raw_mode(0) if tty else None
    agent = Agent(args.log, args.name, tty, script)
    try:
        if tty:
            write("\x1b[?2004h")  # ask the terminal for bracketed paste
        write(f"fake agent {args.name} ready (pid {os.getpid()}) in {os.getcwd()}\n"
              "type a message and press Enter; directives: !ask, !sh CMD, !sleep S, !exit [code]\n" + PROMPT)
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            agent.feed(data)
        if agent.pending:  # a last line without a line end
            agent.submit()
        return 0
    finally:
        if saved is not None:
            import termios

            try:
                write("\x1b[?2004l")
                termios.tcsetattr(0, termios.TCSADRAIN, saved)
            except OSError:
                pass  # the terminal is already gone (tmux killed the pane)


if __name__ == "__main__":
    sys.exit(main())
