"""ao: run many AI coding agents in parallel and carry each one from issue to merged PR."""

__version__ = "0.1.0"
