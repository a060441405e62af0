"""What every `posttrain` command shares: bad input is a message and exit status 2, never a traceback."""

from __future__ import annotations

import functools

import typer
from rich.console import Console

from posttrain.errors import PosttrainError, cut


def fail(message: str, code: int = 2) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(message, markup=False, style="red")
    return typer.Exit(code)


def user_errors(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PosttrainError as e:
            raise fail(str(e), e.exit_code) from None
        except OSError as e:  # a path the system refuses (too long, no permission, a directory): say which
            where = f"{cut(str(e.filename), 120)}: " if e.filename else ""
            raise fail(f"{where}{e.strerror or e}", 2) from None
        except KeyboardInterrupt:
            Console(stderr=True).print("[yellow]interrupted; run the same command again to resume[/yellow]")
            raise typer.Exit(130) from None

    return wrapper
