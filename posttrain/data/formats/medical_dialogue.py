"""Medical dialogue rows (seed 001) -> conversations for SFT and rl_prompts for GRPO, with one system prompt.

Both of the seed's sources have the columns `instruction`, `input`, `output`:
medical_meadow_medical_flashcards ("Answer this question truthfully", the
question, the answer) and ChatDoctor-HealthCareMagic (a fixed "If you are a
doctor..." instruction, the patient's message, the doctor's reply). The
seed's processing gives every conversation the same system prompt and
role-labelled, alternating turns; where a patient message carries earlier
turns as `Patient:` / `Doctor:` lines, they become turns of their own (same-
speaker lines merge, so roles alternate), and the row's `output` is the last
doctor turn.

`medical-dialogue` makes the SFT conversation; `medical-dialogue-rl` makes
the GRPO prompt (everything before the last doctor turn) whose ground truth
is the reference answer `output` (a plain string, as VERL's
`reward_model.ground_truth` holds it), which `medical_dialogue_quality` and
the bleu / rouge metrics compare with: training reward and evaluation
metrics read the same record.

Unlike plain alpaca, the instruction is the system prompt's business here:
it is the same generic sentence on every row of a source, and repeating it in
each user turn only spends context, so the user turn is the `input` (the
instruction alone when a row has no input).

Fields (UNKNOWN_FIELDS = "refuse", both formats): instruction, input and
output are read; bookkeeping fields (id, source, ...) are ignored with a
warning; any other field is a RecordError naming it.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from posttrain.data.formats import fields
from posttrain.data.records import validate_conversation, validate_rl_prompt
from posttrain.errors import RecordError

SYSTEM_PROMPT = ("You are a medical assistant. Answer the patient's question accurately and clearly, in a few "
                 "sentences, and advise seeing a doctor when it is needed.")
DATA_SOURCE = "medical_dialogue"
_SPEAKER = re.compile(r"^\s*(patient|user|doctor|chatdoctor|assistant)\s*:\s*", re.IGNORECASE | re.MULTILINE)
_ROLE = {"patient": "user", "user": "user", "doctor": "assistant", "chatdoctor": "assistant", "assistant": "assistant"}


def detect(row: dict) -> bool:
    return False  # these rows look like alpaca; the format is chosen by name


def _text(row: dict, key: str, *, required: bool) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        what = "missing" if value is None else f"got {type(value).__name__}"
        raise RecordError(key, f"{what}; expected a string")
    if required and not value.strip():
        raise RecordError(key, "empty; expected text")
    return value.strip()


def _turns(text: str) -> list[dict]:
    """A patient message as turns: `Patient:` / `Doctor:` lines split it, same-speaker runs merge."""
    marks = list(_SPEAKER.finditer(text))
    if not marks:
        return [{"role": "user", "content": text}]
    turns: list[dict] = []
    pieces = [("user", text[:marks[0].start()])] if text[:marks[0].start()].strip() else []
    for mark, following in zip(marks, marks[1:] + [None]):
        end = following.start() if following else len(text)
        pieces.append((_ROLE[mark.group(1).lower()], text[mark.end():end]))
    for role, content in pieces:
        content = content.strip()
        if not content:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n" + content
        else:
            turns.append({"role": role, "content": content})
    if not turns or turns[0]["role"] != "user":
        raise RecordError("input", "expected the patient to speak first")
    if turns[-1]["role"] != "user":
        raise RecordError("input", "ends with a doctor turn; expected the patient's message last (the reply is "
                          "`output`)")
    return turns


def _prompt(row, fmt: str) -> list[dict]:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    fields.check(row, fmt, ("instruction", "input", "output"), record="conversation" if fmt == "medical-dialogue"
                 else "rl_prompt")
    instruction = _text(row, "instruction", required=False)
    query = _text(row, "input", required=False)
    if not query and not instruction:
        raise RecordError("input", "empty, and so is instruction; expected the patient's question")
    return [{"role": "system", "content": SYSTEM_PROMPT}, *_turns(query or instruction)]


def to_conversation(row, columns=None, tags=None) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    answer = {"role": "assistant", "content": _text(row, "output", required=True)}
    messages = _prompt(row, "medical-dialogue") + [answer]
    return validate_conversation({"messages": messages})


def to_rl_prompt(row, columns=None, tags=None) -> dict:
    prompt = _prompt(row, "medical-dialogue-rl")
    return validate_rl_prompt({"prompt": prompt, "data_source": DATA_SOURCE,
                               "ground_truth": _text(row, "output", required=True),
                               "extra_info": {"ability": "medical_dialogue"}})


# one way only: an rl_prompt or a conversation does not say which source row it came from
CONVERSATION = SimpleNamespace(RECORD="conversation", detect=detect, to_record=to_conversation, from_record=None,
                               UNKNOWN_FIELDS="refuse")
RL_PROMPT = SimpleNamespace(RECORD="rl_prompt", detect=detect, to_record=to_rl_prompt, from_record=None,
                            UNKNOWN_FIELDS="refuse")
