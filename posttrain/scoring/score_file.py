"""`posttrain score`: a reward model's scores for every record of a file.

Pairs (preference records, any preference format) get a chosen and a
rejected score, and the accuracy over non-tie pairs (chosen above rejected,
the reward_model stage's eval accuracy); single responses (conversation
records: the last assistant turns scored after the turns before them; or
rl_prompt rows with a `completion`) get one score each. A process reward model
also gives each response's step scores (`step_scores`, P(correct) per step, the
response split into steps at `step_separator`), its `score` their aggregate;
on `steps` records (labelled solutions) it gives the step scores and the
process_reward stage's own metrics, step accuracy and first-error F1. The
output jsonl is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from posttrain.data.formats import detect_format, get_format, load_records
from posttrain.data.io import read_rows, write_records
from posttrain.data.records import validate_prompt
from posttrain.errors import DataError, PosttrainError, RecordError
from posttrain.scoring import load_scorer, model_kind
from posttrain.scoring.process import aggregate_scores, split_steps, step_metrics


@dataclass
class ScoreResult:
    rows: list[dict] = field(default_factory=list)
    kind: str = "pairs"  # or "single", or "steps"
    metrics: dict = field(default_factory=dict)  # step accuracy and first-error F1 of `steps` records
    pairs: int = 0
    correct: int = 0
    ties: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.pairs if self.pairs else None


def items(path, fmt: str | None):
    """(kind, line, record) for each record: kind `pair` (a preference record), `steps` (a labelled
    solution) or `single` (prompt, response)."""
    first = next(iter(read_rows(path)), None)
    if first is None:
        raise PosttrainError(f"{path}: no records")
    _, row = first
    if fmt is None and isinstance(row, dict) and "completion" in row and "prompt" in row:
        for line, row in read_rows(path):
            yield "single", line, _prompt_completion(path, line, row)
        return
    name = fmt or _detect(path, row)
    record_type = get_format(name).RECORD
    if record_type not in ("preference", "conversation", "steps"):
        raise PosttrainError(f"{path}: {name} makes {record_type} records; `posttrain score` scores preference "
                             "pairs, step-labelled solutions, conversations, or rows with a prompt and a completion")
    for line, record in load_records(path, name, record=record_type):
        if record_type == "preference":
            yield "pair", line, record
        elif record_type == "steps":
            yield "steps", line, record
        else:
            if record.get("tools"):
                raise DataError(path, line, "tools", "a tool list; `posttrain score` scores conversations without "
                                "tools (the reward model would not see them): drop the tools column")
            messages = record["messages"]
            cut = max(i for i, m in enumerate(messages) if m["role"] != "assistant") + 1
            yield "single", line, {"prompt": messages[:cut], "response": messages[cut:]}


def _detect(path, row) -> str:
    try:
        return detect_format(row)
    except PosttrainError as e:
        raise DataError(path, 1, "format", str(e)) from None


def _prompt_completion(path, line, row) -> dict:
    try:
        prompt = validate_prompt(row.get("prompt"), ends_with_user=False)
    except RecordError as e:
        raise DataError(path, line, e.field, e.expected) from None
    completion = row.get("completion")
    if isinstance(completion, list):
        completion = "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
    if not isinstance(completion, str):
        raise DataError(path, line, "completion", "expected a string or a list of assistant messages")
    return {"prompt": prompt, "response": [{"role": "assistant", "content": completion}]}


def score_file(model: str, path, fmt: str | None = None, out=None, batch_size: int = 8, progress=None,
               step_separator: str = "\n", aggregate: str = "min") -> ScoreResult:
    """Score every record of `path` with the reward model `model`; write `out` (jsonl) when given.

    `step_separator` and `aggregate` apply to a process reward model scoring whole responses: where a
    response is cut into steps, and how its step scores make one score (min, mean or product).
    """
    records = list(items(path, fmt))  # read (and check) all of it before loading a model
    kind = model_kind(model)
    if kind == "process":
        aggregate_scores([], aggregate)  # an unknown aggregate fails before the model loads
        split_steps("", step_separator)
    elif any(what == "steps" for what, _, _ in records):
        raise PosttrainError(f"{path}: step-labelled solutions need a process reward model; {model} is a "
                             "Bradley-Terry reward model (one score per response)")
    scorer = load_scorer(model, batch_size=batch_size)
    first = records[0][0] if records else "single"
    result = ScoreResult(kind={"pair": "pairs", "steps": "steps"}.get(first, "single"))
    jobs = []  # (record index, key, prompt, response: messages, or a list of steps)
    for i, (what, _, record) in enumerate(records):
        if what == "pair":
            jobs += [(i, "chosen", record["prompt"], record["chosen"]),
                     (i, "rejected", record["prompt"], record["rejected"])]
        elif what == "steps":
            jobs.append((i, "", record["prompt"], record["completions"]))
        else:
            jobs.append((i, "", record["prompt"], record["response"]))
    rows = [{"line": line, **record} for _, line, record in records]
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        if kind == "bradley_terry":
            scores = scorer.score_many([(prompt, response) for _, _, prompt, response in batch])
            for (i, key, _, _), score in zip(batch, scores):
                rows[i][f"{key}_score" if key else "score"] = score
        else:
            steps = [response if isinstance(response[0], str) else
                     split_steps("".join(m["content"] for m in response), step_separator)
                     for _, _, _, response in batch]
            probabilities = scorer.step_probabilities_many([(job[2], s) for job, s in zip(batch, steps)])
            for (i, key, _, _), ps in zip(batch, probabilities):
                prefix = f"{key}_" if key else ""
                rows[i][f"{prefix}step_scores"] = ps
                rows[i][f"{prefix}score"] = aggregate_scores(ps, aggregate)
        if progress:
            progress(len(batch))
    for (what, _, record), row in zip(records, rows):
        if what == "pair":
            if record["tie"]:
                result.ties += 1
                continue
            result.pairs += 1
            result.correct += row["chosen_score"] > row["rejected_score"]
    if result.kind == "steps":
        labelled = [(row["step_scores"], record["labels"]) for (what, _, record), row in zip(records, rows)
                    if what == "steps"]
        result.metrics = step_metrics([ps for ps, _ in labelled], [labels for _, labels in labelled])
    result.rows = rows
    if out:
        write_records(out, rows, "jsonl")
    return result


def count_jobs(path, fmt=None) -> int:
    return sum(2 if what == "pair" else 1 for what, _, _ in items(path, fmt))
