"""``labkit broker``: run the broker. The flags and the run loop live in labkit.broker.launcher."""

from __future__ import annotations

from labkit.broker.launcher import HELP, add_arguments, run

NAME = "broker"

__all__ = ["NAME", "HELP", "add_arguments", "run"]
