"""`posttrain data variants`: DataEva's dataset variants (seed 002) from one agent-evaluation file.

The seed trains its agent judge on several slices of `finetune.jsonl` and
registers them for LLaMA-Factory. This writes the same files, so a recipe (or
LLaMA-Factory itself) picks a slice by name from the `dataset_info.json`:

- no filters: `reward_model_full`, `reward_model_clip|category|final` (the types present),
  `reward_model_<model>` per model name (`-` and `.` -> `_`) and `reward_model_task_<task>`
  per task id (the seed dropped these as too many files; here they are kept, as the issue asks);
- with `--evaluation-types` / `--model-names` / `--task-ids`: only `reward_model_custom`, the rows
  matching all given filters, as the seed does.

Each variant is `<name>_train.json` (alpaca-like `instruction`, `output`, plus the row's `metadata`,
as the seed keeps it), and with `split_eval`, when it has at least `min_samples` rows, `<name>_eval.json`
holding max(1, int(n · eval_ratio)) rows after a shuffle with `seed` (the seed's random.seed(42) split).
`dataset_info.json` gives each variant `file_name`, the seed's `file_name_eval`, and columns
prompt=instruction, response=output; the eval file is also its own entry `<name>_eval`, which is how
posttrain and LLaMA-Factory name an evaluation set. Every row is read and checked before anything is
written, and each file is written atomically.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from posttrain.data.formats.agent_eval import instruction_output, metadata_of
from posttrain.data.io import read_rows, write_json, write_records
from posttrain.errors import DataError, PosttrainError, RecordError

COLUMNS = {"prompt": "instruction", "response": "output"}


def safe_name(value: str) -> str:
    """The seed's file-name form (`-` and `.` -> `_`), and nothing that would leave the directory."""
    return re.sub(r"[^0-9A-Za-z_]", "_", str(value).replace("-", "_").replace(".", "_"))


def read_agent_eval(path, *, with_metadata: bool = True) -> list[dict]:
    """Every row of `path` as {instruction, output, metadata}; a bad row raises DataError with its line."""
    rows = []
    for line, row in read_rows(path):
        try:
            metadata = metadata_of(row)
            instruction, output = instruction_output(row, with_metadata=with_metadata)
        except RecordError as e:
            raise DataError(path, line, e.field, e.expected) from None
        rows.append({"instruction": instruction, "output": output, "metadata": metadata})
    if not rows:
        raise PosttrainError(f"{path}: no records")
    return rows


def _matching(rows, evaluation_types=None, model_names=None, task_ids=None) -> list[dict]:
    def keep(m):
        return ((not evaluation_types or m.get("evaluation_type") in evaluation_types)
                and (not model_names or m.get("model_name") in model_names)
                and (not task_ids or m.get("task_id") in task_ids))

    return [r for r in rows if keep(r["metadata"])]


def plan_variants(rows, *, evaluation_types=None, model_names=None, task_ids=None) -> dict[str, list[dict]]:
    """Variant name -> its rows, in the seed's order."""
    if evaluation_types or model_names or task_ids:
        chosen = _matching(rows, evaluation_types, model_names, task_ids)
        if not chosen:
            raise PosttrainError("variants: no record matches the filters "
                                 f"(evaluation types {evaluation_types}, models {model_names}, tasks {task_ids})")
        return {"reward_model_custom": chosen}
    variants = {"reward_model_full": list(rows)}
    for kind in ("clip", "category", "final"):
        subset = _matching(rows, evaluation_types=[kind])
        if subset:
            variants[f"reward_model_{kind}"] = subset
    for key, prefix in (("model_name", "reward_model_"), ("task_id", "reward_model_task_")):
        for value in sorted({str(r["metadata"][key]) for r in rows if r["metadata"].get(key)}):
            name = prefix + safe_name(value)
            if name in variants:
                raise PosttrainError(f"variants: {key} {value!r} makes the name {name}, which another variant has")
            variants[name] = [r for r in rows if str(r["metadata"].get(key)) == value]
    return variants


def split_rows(rows, *, eval_ratio: float, min_samples: int, seed: int) -> tuple[list, list]:
    """(train, eval) as the seed splits: shuffle with `seed`, the last max(1, int(n·ratio)) rows for eval."""
    if len(rows) < min_samples:
        return list(rows), []
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    size = max(1, int(len(shuffled) * eval_ratio))
    return shuffled[:len(shuffled) - size], shuffled[len(shuffled) - size:]


def write_variants(
    in_path, out_dir, *, evaluation_types=None, model_names=None, task_ids=None, split_eval: bool = False,
    eval_ratio: float = 0.15, min_samples: int = 5, seed: int = 42, with_metadata: bool = True,
) -> dict[str, dict[str, int]]:
    """Write the variants of `in_path` and their dataset_info.json into `out_dir`; return name -> counts."""
    if not 0 < eval_ratio < 1:
        raise PosttrainError(f"--eval-ratio: expected a number between 0 and 1, got {eval_ratio}")
    if min_samples < 2:
        raise PosttrainError(f"--min-samples: expected at least 2, got {min_samples}")
    for option, values, allowed in (("--evaluation-types", evaluation_types, ("clip", "category", "final")),):
        bad = [v for v in values or [] if v not in allowed]
        if bad:
            raise PosttrainError(f"{option}: unknown {', '.join(bad)}; expected {', '.join(allowed)}")
    rows = read_agent_eval(in_path, with_metadata=with_metadata)
    variants = plan_variants(rows, evaluation_types=evaluation_types, model_names=model_names, task_ids=task_ids)
    out = Path(out_dir)
    info, counts = {}, {}
    for name, subset in variants.items():
        train, held = split_rows(subset, eval_ratio=eval_ratio, min_samples=min_samples, seed=seed) \
            if split_eval else (subset, [])
        write_records(out / f"{name}_train.json", train)
        info[name] = {"file_name": f"{name}_train.json", "columns": dict(COLUMNS)}
        counts[name] = {"train": len(train)}
        if held:
            write_records(out / f"{name}_eval.json", held)
            info[name]["file_name_eval"] = f"{name}_eval.json"
            info[f"{name}_eval"] = {"file_name": f"{name}_eval.json", "columns": dict(COLUMNS)}
            counts[name]["eval"] = len(held)
    write_json(out / "dataset_info.json", info)
    return counts
