"""posttrain/serving/chat.py and `posttrain chat`: piped turns answered as greedy generation answers the same history,
/reset, /system, /exit and end of input; a terminal session ends cleanly on Ctrl-D."""

from __future__ import annotations

import io

from typer.testing import CliRunner

from posttrain.serving.chat import chat
from posttrain.cli import app
from posttrain.evaluation.generation import GenerationSettings, generate
from posttrain.serving.inference import Engine

runner = CliRunner()
GREEDY = GenerationSettings(max_new_tokens=10, batch_size=1)


def _answer(engine, messages) -> str:
    return generate(engine.model, engine.tokenizer, [messages], GREEDY)[0]


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def test_piped_turns_keep_the_history_and_follow_the_commands(engine, talkative_model, monkeypatch):
    asked = []
    stream = Engine.stream

    def recording(self, messages, settings, stop=()):
        asked.append(messages)
        return stream(self, messages, settings, stop)

    monkeypatch.setattr(Engine, "stream", recording)
    lines = ["the patient dose", "heart risk week", "", "/reset", "heart risk week", "/system be brief",
             "heart risk week", "/nonsense", "/exit", "never asked"]
    result = runner.invoke(app, ["chat", "--model", str(talkative_model), "--max-new-tokens", "10"],
                           input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output

    first = _answer(engine, [_user("the patient dose")])
    with_history = [_user("the patient dose"), {"role": "assistant", "content": first}, _user("heart risk week")]
    second = _answer(engine, with_history)
    after_reset = _answer(engine, [_user("heart risk week")])
    with_system = _answer(engine, [{"role": "system", "content": "be brief"}, _user("heart risk week")])
    assert asked == [[_user("the patient dose")], with_history, [_user("heart risk week")],
                     [{"role": "system", "content": "be brief"}, _user("heart risk week")]]
    assert second != after_reset != with_system  # the history and the system prompt change the answer
    assert result.stdout == "".join(f"{answer}\n" for answer in (first, second, after_reset, with_system))
    assert "unknown command /nonsense" in result.stderr


def test_the_system_option_and_end_of_input_without_exit(engine, talkative_model):
    result = runner.invoke(app, ["chat", "--model", str(talkative_model), "--max-new-tokens", "10", "--system",
                                 "be brief"], input="heart risk week")
    assert result.exit_code == 0, result.output
    assert result.stdout == _answer(engine, [{"role": "system", "content": "be brief"}, _user("heart risk week")]) + "\n"


def test_a_missing_model_exits_2(tmp_path):
    result = runner.invoke(app, ["chat", "--model", str(tmp_path / "none")], input="hi\n")
    assert result.exit_code == 2 and "cannot load" in result.stderr


def test_a_terminal_session_ends_on_ctrl_d(engine, monkeypatch):
    typed = iter(["the patient dose", "/system be brief"])

    def typing(prompt=""):
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", typing)
    out, err = io.StringIO(), io.StringIO()
    chat(engine, GREEDY, stdin=io.StringIO(), stdout=out, stderr=err, interactive=True)
    assert out.getvalue() == _answer(engine, [_user("the patient dose")]) + "\n"
    assert "/reset" in err.getvalue() and "system prompt set; history cleared" in err.getvalue()
