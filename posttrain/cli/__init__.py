"""The `posttrain` command: a package of thin commands (parse, call the library, print; no logic).

commands.py is the app and the pipeline's own commands (run, train, validate, status, init-model); each
other module is one command or command group. A command imports what it runs when it runs, so that
`posttrain --help` loads none of the training stack.
"""

from __future__ import annotations

from posttrain.cli.commands import app, main

__all__ = ["app", "main"]
