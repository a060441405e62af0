"""Talk to a model in the terminal, or script it through a pipe: `posttrain chat`.

The whole conversation goes through the chat template on every turn (the model
is stateless between calls), so a multi-turn answer is the one the model gives
to that history, exactly as `posttrain eval` would render it. Answers stream
as they are generated.

On a terminal there is a prompt, line editing and notes on stderr. From a pipe
(`stdin` not a TTY) every input line is one user turn and every answer is
printed, then a newline, with nothing else on stdout, so a script can pair its
questions with the answers; the commands work in both.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Iterator, TextIO

from posttrain.evaluation.generation import GenerationSettings
from posttrain.serving.inference import Engine, PromptError

HELP = "commands: /reset (clear the history), /system TEXT (set the system prompt and reset), /exit (or Ctrl-D)"
PROMPT = ">>> "


@dataclass
class Conversation:
    """The system prompt and the turns so far, as chat-template messages."""

    system: str | None = None
    turns: list[dict] = field(default_factory=list)

    @property
    def messages(self) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def reset(self) -> None:
        self.turns = []


def chat(engine: Engine, settings: GenerationSettings, *, system: str | None = None, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None, interactive: bool | None = None) -> None:
    """Read turns and commands until /exit or end of input, answering each turn on stdout as it is generated."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    interactive = stdin.isatty() if interactive is None else interactive

    def note(text: str) -> None:
        if interactive:
            print(text, file=stderr, flush=True)

    conversation = Conversation(system)
    note(HELP)
    for line in _lines(stdin, interactive, stderr):
        command, _, argument = line.strip().partition(" ")
        if command == "/exit":
            break
        if command == "/reset":
            conversation.reset()
            note("history cleared")
        elif command == "/system":
            conversation.system = argument.strip() or None
            conversation.reset()
            note(f"system prompt {'set' if conversation.system else 'cleared'}; history cleared")
        elif command.startswith("/"):
            print(f"unknown command {command}; {HELP}", file=stderr, flush=True)
        elif line.strip():
            _answer(engine, conversation, line, settings, stdout, stderr)


def _lines(stdin: TextIO, interactive: bool, stderr: TextIO) -> Iterator[str]:
    if not interactive:
        for line in stdin:
            yield line.rstrip("\r\n")
        return
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    while True:
        try:
            yield input(PROMPT)
        except EOFError:
            print(file=stderr)
            return
        except KeyboardInterrupt:
            print(f"\n({HELP})", file=stderr, flush=True)


def _answer(engine: Engine, conversation: Conversation, text: str, settings: GenerationSettings,
            stdout: TextIO, stderr: TextIO) -> None:
    """Stream the answer to the conversation with `text` added; the turn joins the history only if answered
    in full (Ctrl-C cancels it and leaves the history as it was)."""
    messages = conversation.messages + [{"role": "user", "content": text}]
    try:
        stream = engine.stream(messages, settings)
    except PromptError as e:  # the context is full, or the template refuses the turn
        print(f"{e}; /reset to start over", file=stderr, flush=True)
        return
    try:
        for piece in stream:
            stdout.write(piece)
            stdout.flush()
    except KeyboardInterrupt:
        stream.cancel()
        print("\n(interrupted; the turn is not kept)", file=stderr, flush=True)
        return
    stdout.write("\n")
    stdout.flush()
    conversation.turns += [{"role": "user", "content": text}, {"role": "assistant", "content": stream.answer.text}]
