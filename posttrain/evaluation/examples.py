"""What a model is evaluated on: a prompt, and what its answer is compared with.

Evaluation reads the two canonical record types that carry a prompt:
`rl_prompt` records (from any format that makes them: rl_prompt jsonl, VERL
parquet, the judge formats, the TrialPanorama tasks), whose `ground_truth`
and `extra_info` go to a reward exactly as in training; and conversations,
cut before their last assistant turn, whose last assistant turn is the
reference text BLEU and ROUGE compare with. Every record is read and checked
before a model is loaded, so bad input fails in seconds and writes nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from posttrain.data.formats import detect_format, get_format, load_records
from posttrain.data.io import read_rows
from posttrain.data.sources import Source
from posttrain.errors import DataError, PosttrainError

RECORD_TYPES = ("rl_prompt", "conversation")


@dataclass
class Example:
    path: str
    line: int
    prompt: list[dict]
    reference: str | None  # the text an output is compared with (BLEU, ROUGE, exact match), when there is one
    data_source: str | None = None
    ground_truth: Any = None
    extra_info: dict = field(default_factory=dict)


def source_format(source: Source, records: tuple[str, ...] = RECORD_TYPES) -> str:
    """The source's format: as given, else detected from its first row; it must make prompts (or `records`)."""
    name = source.format
    if name is None:
        first = next(iter(read_rows(source.path, split=source.split)), None)
        if first is None:
            raise PosttrainError(f"{source.path}: no records")
        try:
            name = detect_format(first[1])
        except PosttrainError as e:
            raise DataError(source.path, first[0], "format", str(e)) from None
    record = get_format(name).RECORD
    if record not in records and records != RECORD_TYPES:
        raise PosttrainError(f"{source.path}: format {name} makes {record} records; expected {' or '.join(records)} "
                             "records")
    if record not in records:
        raise PosttrainError(f"{source.path}: format {name} makes {record} records; evaluation reads prompts "
                             "(rl_prompt formats: rl_prompt, verl, rm-gallery-pairwise, rm-gallery-pointwise, "
                             "agent-eval-judge, trialpanorama-*) or conversations")
    return name


def load_examples(sources: list[Source], limit: int | None = None) -> tuple[list[Example], list[str]]:
    """Every example of `sources` (at most `limit` in all, and each source's max_samples), and their formats."""
    examples: list[Example] = []
    formats = []
    for source in sources:
        name = source_format(source)
        formats.append(name)
        rows = load_records(source.path, name, columns=source.columns, tags=source.tags, split=source.split)
        for line, record in itertools.islice(rows, source.max_samples):
            if limit is not None and len(examples) >= limit:
                return examples, formats
            examples.append(_example(str(source.path), line, record))
    if not examples:
        raise PosttrainError(f"{', '.join(str(s.path) for s in sources)}: no records to evaluate on")
    return examples, formats


def _example(path: str, line: int, record: dict) -> Example:
    if "messages" in record:
        if record.get("tools"):
            # generation renders the prompt's messages only; the model would answer without the tools it was shown
            raise DataError(path, line, "tools", "a tool list; evaluating tool-calling conversations is not "
                            "supported (the prompt would be generated without the tools): drop the tools column "
                            "from the held-out data, or score it with a reward:NAME metric on rl_prompt records")
        messages = record["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        return Example(path, line, messages[:last], messages[last]["content"])
    truth = record["ground_truth"]
    return Example(path, line, record["prompt"], truth if isinstance(truth, str) else None,
                   record["data_source"], truth, record["extra_info"])


def require_references(examples: list[Example], metric: str) -> None:
    """A metric that compares outputs with a reference text needs one on every example."""
    for example in examples:
        if example.reference is None:
            got = type(example.ground_truth).__name__ if example.ground_truth is not None else "null"
            raise DataError(example.path, example.line, "ground_truth",
                            f"metric {metric} compares the output with a reference text; expected a string, "
                            f"got {got} (use a reward:NAME metric for structured ground truths)")
