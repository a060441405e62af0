"""Evaluate one model on one data file: read and check, generate, score, write.

This is what `posttrain eval` and each model of a `type: eval` stage run. The
order is chosen so that bad input costs nothing: metric names and every
record (and what each metric needs of it) are checked before the model
loads, and the two result files are written atomically at the end, so a
failure leaves no half-written output:

- `predictions.jsonl`: per example its file and line, prompt, reference, the
  model's output and its score under each metric;
- `metrics.json`: the model, data and generation settings, the number of
  examples, each metric's figure (`metrics`) and how many examples it covers
  (`counts`).
"""

from __future__ import annotations

import time
from pathlib import Path

from posttrain.data.io import write_json, write_records
from posttrain.data.sources import Source
from posttrain.errors import PosttrainError
from posttrain.evaluation import metrics as metric_lib
from posttrain.evaluation import reward_models, vllm_generation
from posttrain.evaluation.examples import Example, load_examples
from posttrain.evaluation.generation import GenerationSettings, generate, load, tokenizer_for
from posttrain.evaluation.results import EvalResult, with_intervals


def evaluate(model: str, sources: list[Source], metrics: str | list[str], out_dir=None, *,
             adapter: str | None = None, limit: int | None = None, settings: GenerationSettings | None = None,
             template: str | None = None, dtype: str = "auto", trust_remote_code: bool = False,
             attn_implementation: str | None = None, progress: bool = True, backend: str = "auto",
             pass_threshold: float = 0.0, reference: str | None = None,
             reference_adapter: str | None = None) -> EvalResult:
    """Generate an answer to every prompt of `sources` with `model` (plus `adapter`) and score the answers.

    `backend`: hf (transformers' generate), vllm (needs vLLM and a CUDA GPU), or auto (vLLM where it can run).
    With `settings.num_samples` k above 1, each prompt is answered k times: each figure is then the mean over
    the k answers (mean@k), and each reward also gets pass@1 and pass@k (an answer passes above
    `pass_threshold`). `reference` (plus `reference_adapter`): the model `model` was trained from, which
    implicit_reward_accuracy reads the policy against."""
    settings = settings or GenerationSettings()
    names = metric_lib.parse(metrics)
    if names == [reward_models.METRIC]:  # a reward model scores pairs; nothing is generated
        return reward_models.evaluate_reward_model(model, adapter, sources, out_dir, limit=limit,
                                                   batch_size=settings.batch_size)
    if names == [metric_lib.PREFERENCE_ACCURACY]:  # a policy ranks pairs by likelihood; nothing is generated
        return reward_models.evaluate_policy(model, adapter, sources, out_dir, limit=limit,
                                             batch_size=settings.batch_size, template=template, dtype=dtype,
                                             trust_remote_code=trust_remote_code,
                                             attn_implementation=attn_implementation)
    if names == [metric_lib.IMPLICIT_REWARD_ACCURACY]:  # DPO's reward: the policy against its reference
        if reference is None:
            raise PosttrainError(f"{metric_lib.IMPLICIT_REWARD_ACCURACY} reads the model against the model it was "
                                 "trained from; give that reference (posttrain eval --reference DIR; an eval stage "
                                 "uses each listed stage's input model)")
        return reward_models.evaluate_implicit_reward(model, adapter, reference, reference_adapter, sources, out_dir,
                                                      limit=limit, batch_size=settings.batch_size, template=template,
                                                      dtype=dtype, trust_remote_code=trust_remote_code,
                                                      attn_implementation=attn_implementation)
    examples, formats = load_examples(sources, limit)
    metric_lib.check_examples(names, examples)
    prompts = [example.prompt for example in examples for _ in range(settings.num_samples)]
    with_vllm = vllm_generation.use_vllm(backend)
    if with_vllm:
        tokenizer = tokenizer_for(model, adapter, template=template, trust_remote_code=trust_remote_code)
        timing: dict = {}
        outputs = vllm_generation.generate(model, adapter, tokenizer, prompts, settings, dtype=dtype,
                                           trust_remote_code=trust_remote_code, timing=timing)
    else:
        network, tokenizer = load(model, adapter, template=template, dtype=dtype, trust_remote_code=trust_remote_code,
                                  attn_implementation=attn_implementation)
        started = time.time()
        outputs = _generate_hf(network, tokenizer, prompts, settings, f"{Path(str(adapter or model)).name}", progress)
    info = {"model": str(model), "adapter": None if adapter is None else str(adapter),
            "data": [str(s.path) for s in sources], "formats": formats, "generation": settings.as_dict(),
            "backend": "vllm" if with_vllm else "hf",
            "generation_seconds": timing["generation_seconds"] if with_vllm else round(time.time() - started, 2)}
    return score_outputs(examples, outputs, names, out_dir, info, seed=settings.seed,
                         num_samples=settings.num_samples, pass_threshold=pass_threshold)


def _generate_hf(network, tokenizer, prompts, settings, name: str, progress: bool) -> list[str]:
    if not progress:
        return generate(network, tokenizer, prompts, settings)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"generating ({name})", total=len(prompts))
        return generate(network, tokenizer, prompts, settings, progress=lambda n: bar.advance(task, n))


def score_outputs(examples: list[Example], outputs: list[str], names: list[str], out_dir=None,
                  info: dict | None = None, seed: int | None = None, num_samples: int = 1,
                  pass_threshold: float = 0.0, reference: str | None = None,
             reference_adapter: str | None = None) -> EvalResult:
    """Score given outputs and write predictions.jsonl and metrics.json into `out_dir` (when given); each figure
    gets its bootstrap interval, seeded by `seed`. With `num_samples` k, `outputs` holds k answers per example
    in a row, and each row of predictions.jsonl all k with their scores."""
    k = num_samples
    if k == 1:
        per_example, summary = metric_lib.score(names, examples, outputs)
    else:
        scored, _ = metric_lib.score(names, [e for e in examples for _ in range(k)], outputs)
        per_sample = [scored[i * k:(i + 1) * k] for i in range(len(examples))]
        per_example = [metric_lib.over_samples(samples, names, pass_threshold) for samples in per_sample]
        summary = metric_lib.mean_figures(per_example)
    rows = []
    for index, (example, scores) in enumerate(zip(examples, per_example)):
        row = {"path": example.path, "line": example.line, "prompt": example.prompt,
               "reference": example.reference, "output": outputs[index * k], "scores": scores}
        if k > 1:
            row.update(outputs=outputs[index * k:(index + 1) * k], sample_scores=per_sample[index])
        if example.data_source is not None:
            row.update(data_source=example.data_source, ground_truth=example.ground_truth,
                       extra_info=example.extra_info)
        rows.append(row)
    # a reward scores only its own task's records when the data mixes tasks (metrics.py)
    counts = {name: sum(name in scores for scores in per_example) if name.startswith("reward:") else len(examples)
              for name in names}
    document = {**(info or {}), "count": len(examples), "metric_names": names, "metrics": summary, "counts": counts,
                **with_intervals(names, rows, seed)}
    if k > 1:
        document.update(num_samples=k, pass_threshold=pass_threshold)
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_records(out_dir / "predictions.jsonl", rows, "jsonl")
        write_json(out_dir / "metrics.json", document)
    return EvalResult(document, rows, out_dir)
