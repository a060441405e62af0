"""The metrics a generated output is scored with, each per example and over the whole file.

- `bleu`: sacreBLEU's corpus BLEU (0..100, its default 13a tokenizer) against the reference text;
  per example, sacreBLEU's sentence BLEU.
- `rouge`: ROUGE-1, ROUGE-2 and ROUGE-L F1 (0..1) with rouge-score, Porter-stemmed, the mean
  over examples (the scorer `medical_dialogue_quality` uses too).
- `exact_match`: 1 when the output, stripped of surrounding whitespace, is the reference text.
- `reward:NAME`: a reward of the library or a custom `module:function`, called exactly as GRPO
  calls it in training (the same function, on the generated text, with the record's
  ground_truth and extra_info), so the evaluation metric is the training reward; its mean.
  When the data mixes tasks (each record's `data_source` names its reward, as VERL
  dispatches it), a reward that is some records' task scores those records only: one
  eval stage scores sample-size answers with `sample_size_estimation` and PubMed queries
  with `study_search`. A reward that is no record's task (a format check) scores them all.
- `judge`: `posttrain.rewards.judges.judge_metrics` over the outputs: accuracy, the share of
  unparsable outputs and, for pairwise prompts, position consistency over swapped pairs; and the
  majority-class baseline accuracy has to beat (a figure of the data, shown beside the table).

Every name is checked, and every example against what its metrics need, before a model loads.
"""

from __future__ import annotations

from typing import Callable

from posttrain import rewards
from posttrain.errors import ConfigError, DataError, PosttrainError, closest
from posttrain.evaluation.examples import Example, require_references
from posttrain.evaluation.uncertainty import Figure, figure_of, pass_at_k
from posttrain.rewards.adapters import reward_for_source
from posttrain.rewards.judges import DATA_FIGURES, json_scores, judge_metrics, parse_preference, parse_score

RM_ACCURACY = "rm_accuracy"  # a reward model scoring preference pairs: evaluation/reward_models.py
PREFERENCE_ACCURACY = "preference_accuracy"  # a causal LM ranking preference pairs by likelihood: the same module
IMPLICIT_REWARD_ACCURACY = "implicit_reward_accuracy"  # DPO's reward, the policy against its reference: the same
PAIR_METRICS = (RM_ACCURACY, PREFERENCE_ACCURACY, IMPLICIT_REWARD_ACCURACY)  # they score pairs, generate nothing
NAMES = ("bleu", "rouge", "exact_match", "judge", *PAIR_METRICS)
REFERENCE_METRICS = ("bleu", "rouge", "exact_match")  # they compare the output with a reference text
JUDGE_SOURCES = ("pairwise_preference", "pointwise_score", "json_judge")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


def valid_names() -> str:
    return (f"{', '.join(NAMES)}, reward:NAME (NAME one of {', '.join(rewards.names())}, "
            "or module:function, or path/to/file.py:function)")


def check_alone(names: list[str]) -> None:
    pair = next((name for name in names if name in PAIR_METRICS), None)
    if pair and len(names) > 1:
        raise ConfigError(f"metrics: {pair} scores preference pairs and generates nothing; "
                          "list it alone (another eval stage can generate and score with the other metrics)")


def parse(spec: str | list[str]) -> list[str]:
    """Metric names from `a,b,c` or a list, each checked; raises ConfigError naming the valid ones."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n and n.strip()]
    if not names:
        raise ConfigError(f"metrics: none given; expected one or more of {valid_names()}")
    for name in names:
        check(name)
    check_alone(names)
    if len(set(names)) != len(names):
        raise ConfigError(f"metrics: {', '.join(n for n in dict.fromkeys(names) if names.count(n) > 1)} "
                          "listed twice")
    return names


def check(name: str) -> None:
    """Raise ConfigError when `name` is no metric (or its reward or library is missing)."""
    if name.startswith("reward:"):
        reward = name.removeprefix("reward:")
        try:
            rewards.get(reward)
        except ConfigError as e:
            raise ConfigError(f"metric {name!r}: {e}") from None
        return
    if name not in NAMES:
        raise ConfigError(f"metric {name!r}: unknown; metrics: {valid_names()}{closest(name, NAMES)}")
    if name == "bleu":
        _sacrebleu()


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        raise ConfigError("metric 'bleu' needs sacreBLEU: pip install 'posttrain[metrics]'") from None
    return sacrebleu


def check_examples(names: list[str], examples: list[Example]) -> None:
    """Each example has what each metric reads: a reference text, or a judge prompt for `judge`."""
    for name in names:
        if name in REFERENCE_METRICS:
            require_references(examples, name)
        if name == "judge":
            for example in examples:
                if example.data_source not in JUDGE_SOURCES:
                    got = "a conversation" if example.data_source is None else repr(example.data_source)
                    raise DataError(example.path, example.line, "data_source",
                                    f"metric judge reads judge prompts ({', '.join(JUDGE_SOURCES)}); got {got}")


def score(names: list[str], examples: list[Example], outputs: list[str]) -> tuple[list[dict], dict]:
    """Per-example scores (one dict per example) and the file's figures (metric -> value; `judge` -> a dict)."""
    if len(outputs) != len(examples):
        raise PosttrainError(f"{len(outputs)} outputs for {len(examples)} examples")
    per_example: list[dict] = [{} for _ in examples]
    summary: dict = {}
    for name in names:
        scorer = _reward if name.startswith("reward:") else SCORERS[name]
        values, figures = scorer(name, examples, outputs)
        for row, value in zip(per_example, values):
            row.update(value)
        summary.update(figures)
    return per_example, summary


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _bleu(name, examples, outputs):
    sacrebleu = _sacrebleu()
    references = [e.reference for e in examples]
    per = [{"bleu": sacrebleu.sentence_bleu(o, [r]).score} for o, r in zip(outputs, references)]
    return per, {"bleu": sacrebleu.corpus_bleu(outputs, [references]).score}


def _rouge(name, examples, outputs):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    per = []
    for example, output in zip(examples, outputs):
        scores = scorer.score(example.reference, output)
        per.append({key: scores[key].fmeasure for key in ROUGE_KEYS})
    return per, {key: _mean(row[key] for row in per) for key in ROUGE_KEYS}


def _exact_match(name, examples, outputs):
    per = [{"exact_match": float(o.strip() == e.reference.strip())} for e, o in zip(examples, outputs)]
    return per, {"exact_match": _mean(row["exact_match"] for row in per)}


def _reward(name, examples, outputs):
    """The reward as GRPO calls it; a dict result also keeps its other numeric keys as `reward:NAME.key`."""
    reward = name.removeprefix("reward:")
    function = rewards.get(reward)
    tasks = [_task(example) for example in examples]
    own_task = reward in tasks
    per = []
    for example, output, task in zip(examples, outputs, tasks):
        if own_task and task != reward:
            per.append({})  # another task's record: its own reward scores it
            continue
        # a conversation has no ground truth but its reference answer, which is what a reward scores against
        truth = example.ground_truth if example.data_source is not None else example.reference
        result = function(output, truth, example.extra_info)
        row = {name: rewards.score_value(result)}
        if isinstance(result, dict):
            row.update({f"{name}.{key}": float(value) for key, value in result.items()
                        if key != "score" and isinstance(value, (int, float)) and not isinstance(value, bool)})
        per.append(row)
    return per, mean_figures(per)


def _task(example: Example) -> str | None:
    """The reward a record's data_source names (`study_search_test` -> `study_search`), or None."""
    if example.data_source is None:
        return None
    try:
        return reward_for_source(example.data_source)
    except ValueError:
        return None


def _judge(name, examples, outputs):
    records = [{"data_source": e.data_source, "ground_truth": e.ground_truth, "extra_info": e.extra_info,
                "output": o} for e, o in zip(examples, outputs)]
    per = []
    for record in records:
        # what the judge said, read by the same parser its reward and judge_metrics use
        if record["data_source"] == "pairwise_preference":
            verdict = parse_preference(record["output"])
        elif record["data_source"] == "pointwise_score":
            verdict = parse_score(record["output"])
        else:
            truth = record["ground_truth"] if isinstance(record["ground_truth"], dict) else {}
            verdict = json_scores(record["output"], truth.get("evaluation_type"))
        per.append({"judge": verdict})
    return per, {"judge": judge_metrics(records)}


SCORERS: dict[str, Callable] = {"bleu": _bleu, "rouge": _rouge, "exact_match": _exact_match, "judge": _judge}


def resampling_figures(names: list[str], rows: list[dict]) -> dict:
    """Each figure of `score`'s summary (flattened as compare.figures names them) as a function of the examples,
    for its bootstrap interval and paired comparisons (evaluation/uncertainty.py); `rows` as predictions.jsonl."""
    found: dict = {}
    if "bleu" in names:
        found["bleu"] = Figure(units=[(r["output"], r["reference"]) for r in rows], compute=_corpus_bleu)
    if "judge" in names:
        records = [{key: row.get(key) for key in ("data_source", "ground_truth", "extra_info", "output")}
                   for row in rows]
        for key, value in judge_metrics(records).items():
            # counts and the majority baseline are of the data, the same for every model: nothing to resample
            if key not in DATA_FIGURES and isinstance(value, (int, float)):
                found[f"judge.{key}"] = Figure(units=records, compute=lambda part, key=key: judge_metrics(part)
                                               .get(key, float("nan")))
    # every other figure is the mean of a per-example score of the same name
    keys = dict.fromkeys(key for row in rows for key in row.get("scores", {}) if key not in ("bleu", "judge"))
    for key in keys:
        found[key] = figure_of([row.get("scores", {}).get(key) for row in rows])
    return found


def _corpus_bleu(pairs) -> float:
    return _sacrebleu().corpus_bleu([o for o, _ in pairs], [[r for _, r in pairs]]).score


def over_samples(samples: list[dict], names: list[str], pass_threshold: float = 0.0) -> dict:
    """One example's scores over its k sampled answers: each score's mean over them (mean@k), and for each
    reward and exact_match the unbiased pass@1 and pass@k (an answer passes when it scores above the
    threshold)."""
    k = len(samples)
    scores = mean_figures(samples)
    for name in names:
        if (name.startswith("reward:") or name == "exact_match") and name in samples[0]:
            passed = sum(s[name] > pass_threshold for s in samples)  # one example's samples share its metrics
            scores[f"{name}.pass@1"] = pass_at_k(k, passed, 1)
            scores[f"{name}.pass@{k}"] = pass_at_k(k, passed, k)
    return scores


def mean_figures(per_example: list[dict]) -> dict:
    """Each score's mean over the rows that have it: a file's figures from its examples' scores, or one
    example's mean@k from its samples'."""
    keys = dict.fromkeys(key for row in per_example for key in row)
    return {key: _mean(row[key] for row in per_example if key in row) for key in keys}
