"""The eval stage (posttrain/stages/eval.py): base and a LoRA stage evaluated side by side, skip/rerun by
fingerprint, and validate's problems."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from posttrain.errors import ConfigError
from posttrain.pipeline import read_manifest, run
from posttrain.pipeline.validate import validate
from tests.conftest import make_chats, write_jsonl


def _prompts(n: int, seed: int = 0) -> list[dict]:
    return [{"prompt": chat["messages"][:1], "data_source": "exact_match",
             "ground_truth": chat["messages"][1]["content"]} for chat in make_chats(n, seed=seed)]


def _config(tmp_path, tiny_model, **eval_stage) -> dict:
    chats = tmp_path / "chats.jsonl"
    if not chats.exists():
        write_jsonl(chats, make_chats(40))
    prompts = tmp_path / "prompts.jsonl"
    if not prompts.exists():
        write_jsonl(prompts, _prompts(8, seed=1))
    return {"name": "e", "model": str(tiny_model), "output_dir": str(tmp_path / "run"), "stages": [
        {"name": "sft", "type": "sft", "data": str(chats), "finetuning": "lora",
         "trainer": {"max_steps": 2, "max_length": 128, "per_device_train_batch_size": 4, "save_steps": 2}},
        {"name": "ev", "type": "eval", "models": ["base", "sft"], "data": str(prompts),
         "metrics": ["exact_match", "rouge", "reward:exact_match"], "max_new_tokens": 4, "limit": 5,
         **eval_stage},
    ]}


def _run(config, **kwargs) -> tuple:
    console = Console(file=io.StringIO(), width=200)
    run_dir = run(config, console=console, **kwargs)
    return run_dir, console.file.getvalue()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model):
    tmp_path = tmp_path_factory.mktemp("eval-stage")
    run_dir, printed = _run(_config(tmp_path, tiny_model))
    return tmp_path, run_dir, printed


def test_each_model_gets_predictions_and_metrics(evaluated, tiny_model):
    _, run_dir, _ = evaluated
    for model in ("base", "sft"):
        rows = [json.loads(line) for line in (run_dir / "ev" / model / "predictions.jsonl").read_text().splitlines()]
        assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
        assert all(set(r["scores"]) == {"exact_match", "rouge1", "rouge2", "rougeL", "reward:exact_match"}
                   for r in rows)
    sft = json.loads((run_dir / "ev" / "sft" / "metrics.json").read_text())
    # the LoRA stage's adapter, on the base its adapter_config.json names
    assert sft["adapter"] == str(run_dir / "sft" / "model") and sft["model"] == str(tiny_model)
    assert sft["generation"]["seed"] == 42 and sft["count"] == 5
    combined = json.loads((run_dir / "ev" / "metrics.json").read_text())
    assert list(combined["models"]) == ["base", "sft"] and combined["models"]["sft"]["ref"] == "sft"
    assert combined["figures"]["sft"] == sft["metrics"]
    entry = read_manifest(run_dir)["stages"]["ev"]
    assert entry["status"] == "done" and entry["output"] == str(run_dir / "ev" / "metrics.json")


def test_the_comparison_is_printed_as_markdown(evaluated):
    _, run_dir, printed = evaluated
    from posttrain.evaluation.compare import comparison_table, markdown_table

    combined = json.loads((run_dir / "ev" / "metrics.json").read_text())
    table = markdown_table(combined["figures"], combined["intervals"])
    assert table in printed
    assert table.splitlines()[0] == "| model | exact_match | rouge1 | rouge2 | rougeL | reward:exact_match |"
    assert [line.split(" |")[0] for line in table.splitlines()[2:]] == ["| base", "| sft"]
    assert " [0, 0] |" in table.splitlines()[2]  # each figure with its interval: nothing varies here
    # the LoRA stage against its input, which is the base: one comparison, not two
    assert [(c["model"], c["against"], c["relation"]) for c in combined["comparisons"]] == [("sft", "base", "input")]
    assert comparison_table(combined["comparisons"]) in printed
    assert "| sft | base (input) | +0 [+0, +0] p=1 within noise |" in printed


def test_the_stage_and_the_run_get_a_report(evaluated):
    _, run_dir, printed = evaluated
    for path in (run_dir / "ev" / "report.html", run_dir / "report.html"):
        page = path.read_text(encoding="utf-8")
        assert "Evaluation: ev<" in page and "<h3>sft " in page and ">reward:exact_match<" in page
    assert f"report: {run_dir / 'report.html'}" in " ".join(printed.split())


def test_skipped_when_unchanged_rerun_when_a_model_data_or_setting_changes(tiny_model, tmp_path):
    config = _config(tmp_path, tiny_model)
    run_dir, _ = _run(config)

    def run_ids():
        return {name: entry["run_id"] for name, entry in read_manifest(run_dir)["stages"].items()}

    first = run_ids()
    _, printed = _run(_config(tmp_path, tiny_model, batch_size=2))  # how fast, not what: still the same results
    assert run_ids() == first and "| base |" in printed  # the table is printed for a skipped stage too
    _run(_config(tmp_path, tiny_model, max_new_tokens=5))
    after_setting = run_ids()
    assert after_setting["sft"] == first["sft"] and after_setting["ev"] != first["ev"]
    write_jsonl(tmp_path / "prompts.jsonl", _prompts(8, seed=2))
    _run(_config(tmp_path, tiny_model, max_new_tokens=5))
    after_data = run_ids()
    assert after_data["ev"] != after_setting["ev"]
    _run(_config(tmp_path, tiny_model, max_new_tokens=5), only="sft", force=True)  # the LoRA stage retrained
    _run(_config(tmp_path, tiny_model, max_new_tokens=5))
    assert run_ids()["ev"] != after_data["ev"]


def test_unknown_models_fail_before_anything_trains(tiny_model, tmp_path):
    config = _config(tmp_path, tiny_model, models=["base", "sfft"])
    with pytest.raises(ConfigError, match=r"stages.ev.models: 'sfft' is neither base, an earlier stage \(sft\) "
                                          "nor a model directory"):
        run(config)
    assert not (tmp_path / "run").exists()


def test_validate_lists_unknown_models_metrics_and_bad_wiring(tiny_model, tmp_path):
    config = _config(tmp_path, tiny_model, models=["base", "sfft", str(tmp_path / "nowhere")])
    problems = validate(config).problems
    assert problems == [
        "stages.ev.models: 'sfft' is neither base, an earlier stage (sft) nor a model directory",
        f"stages.ev.models: '{tmp_path / 'nowhere'}' is neither base, an earlier stage (sft) nor a model directory"]
    [problem] = validate(_config(tmp_path, tiny_model, metrics=["rouge", "blue"])).problems
    assert "stages.ev.metrics: metric 'blue': unknown; metrics: bleu, rouge, exact_match, judge, rm_accuracy, preference_accuracy, implicit_reward_accuracy, reward:NAME" in problem
    later = _config(tmp_path, tiny_model)
    later["stages"].append({"name": "late", "type": "sft", "model": "ev", "data": str(tmp_path / "chats.jsonl")})
    [problem] = validate(later).problems
    assert "stages.late: 'ev' is an eval stage; it writes no model to start from, score with or evaluate" in problem


def test_validate_checks_what_each_metric_needs(tiny_model, tmp_path):
    config = _config(tmp_path, tiny_model, metrics=["judge"])
    report = validate(config)
    assert report.problems == [f"stages.ev.metrics: {tmp_path / 'prompts.jsonl'}:1: data_source: metric judge reads "
                               "judge prompts (pairwise_preference, pointwise_score, json_judge); got 'exact_match'"]
    assert f"stages.ev.data: {tmp_path / 'prompts.jsonl'}: 8 valid records (rl_prompt)" in report.notes


@pytest.fixture
def search_backend():
    """The search module as the stage leaves it (it configures this process's backend), reset afterwards."""
    from posttrain.rewards import search

    previous = dict(search._configured)
    yield search
    search.configure(**previous)


def test_study_search_metrics_query_the_stages_corpus(tiny_model, tmp_path, search_backend, monkeypatch):
    from posttrain.config import load_config
    from posttrain.pipeline import stage_fingerprint

    rows = [{"prompt": "Find the trials.", "data_source": "study_search", "ground_truth": {"relevant_pmids": ["1"]}}]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"pmid": "1", "title": "heart failure trial", "abstract": "x"}])
    config = {"name": "s", "model": str(tiny_model), "output_dir": str(tmp_path / "run"), "stages": [
        {"name": "ev", "type": "eval", "data": str(write_jsonl(tmp_path / "p.jsonl", rows)),
         "metrics": ["reward:study_search"], "max_new_tokens": 2, "search_corpus": str(corpus)}]}
    run_dir = run(config)
    assert len(list((run_dir / "ev").glob("search_index-*.db"))) == 1
    assert search_backend.search("heart failure", 10) == ["1"]  # what the reward queried
    before = stage_fingerprint(load_config(config).stages[0], load_config(config), "m")
    write_jsonl(corpus, [{"pmid": "2", "title": "gout trial", "abstract": "x"}])
    assert stage_fingerprint(load_config(config).stages[0], load_config(config), "m") != before
    for name in ("POSTTRAIN_SEARCH_INDEX", "POSTTRAIN_SEARCH_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    no_backend = {**config, "stages": [{**config["stages"][0], "search_corpus": None}]}
    assert any("rewards study_search run PubMed queries" in p for p in validate(no_backend).problems)


def test_each_model_is_compared_with_its_nearest_evaluated_input_and_with_the_base():
    from posttrain.config import load_config
    from posttrain.stages.eval import comparison_pairs

    data = {"path": "d.jsonl", "format": "rl_prompt"}
    config = load_config({"name": "p", "model": "models/base", "stages": [
        {"name": "sft1", "type": "sft", "data": "c.jsonl"},
        {"name": "sft2", "type": "sft", "model": "sft1", "data": "c.jsonl"},
        {"name": "grpo", "type": "grpo", "model": "sft2", "data": data, "rewards": ["answer_tags"]},
        {"name": "ev", "type": "eval", "models": ["base", "sft2", "grpo", "models/other"], "data": data,
         "metrics": ["reward:answer_tags"]}]})
    assert comparison_pairs(config.stage("ev"), config) == [
        ("sft2", "base", "input"),  # sft1 is not evaluated: the nearest evaluated model it comes from
        ("grpo", "sft2", "input"), ("grpo", "base", "base"),
        ("other", "base", "base"),  # a model directory: against the base only
    ]


def test_the_printed_comparison_says_the_majority_baseline(tmp_path):
    """What the pipeline prints of an eval stage of judges: the table, then the baseline, naming a judge whose
    interval does not lie above it."""
    from posttrain.stages.eval import comparison

    judge = {"count": 4, "accuracy": 0.5, "unparsable": 0.0, "majority_baseline": 0.75}
    combined = {"models": {"base": {"metrics": {"judge": judge}}, "judge": {"metrics": {"judge": judge}}},
                "figures": {"base": {"judge.accuracy": 0.5}, "judge": {"judge.accuracy": 1.0}},
                "intervals": {"base": {"judge.accuracy": [0.25, 0.75]}, "judge": {"judge.accuracy": [1.0, 1.0]}}}
    (tmp_path / "metrics.json").write_text(json.dumps(combined))
    assert comparison(tmp_path).splitlines()[-2:] == [
        "", "majority-class baseline (always the most common label): judge.accuracy 0.75; not above it "
            "(95 % interval's low end at or below it): base"]
