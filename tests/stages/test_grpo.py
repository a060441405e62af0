"""The GRPO stage: rl_prompt records, library rewards with weights, per-reward logging, a saved model."""

from __future__ import annotations

import json

import pytest

from posttrain.errors import ConfigError, PosttrainError
from posttrain.pipeline import read_manifest, run
from tests.conftest import write_jsonl


def prompts(n=8):
    return [{"prompt": [{"role": "user", "content": f"A trial has 2 arms of {10 * (i + 1)}. Total?"}],
             "data_source": "sample_size_estimation", "ground_truth": {"target": 20 * (i + 1)},
             "extra_info": {"index": i}} for i in range(n)]


def config(tmp_path, tiny_model, **trainer):
    data = write_jsonl(tmp_path / "rl.jsonl", prompts())
    return {"name": "g", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
            "stages": [{"name": "rl", "type": "grpo", "data": {"path": str(data), "format": "rl_prompt"},
                        "rewards": ["sample_size_estimation", {"name": "answer_tags", "weight": 0.5}],
                        "trainer": {"max_steps": 2, "per_device_train_batch_size": 4, "num_generations": 4,
                                    "max_completion_length": 8, "logging_steps": 1, "learning_rate": 1e-4,
                                    **trainer}}]}


def test_grpo_stage_trains_and_logs_each_reward(tmp_path, tiny_model):
    run_dir = run(config(tmp_path, tiny_model))
    assert read_manifest(run_dir)["stages"]["rl"]["status"] == "done"
    assert (run_dir / "rl" / "model" / "model.safetensors").exists()
    lines = [json.loads(line) for line in (run_dir / "rl" / "trainer_log.jsonl").read_text().splitlines()]
    logged = set().union(*lines)
    assert {"rewards/sample_size_estimation/mean", "rewards/sample_size_estimation/std",
            "rewards/answer_tags/mean"} <= logged, logged
    # a random model writes no tags: every completion scores -2 on format, 0 on answer_tags
    assert all(line["rewards/sample_size_estimation/mean"] == -2.0 for line in lines
               if "rewards/sample_size_estimation/mean" in line)


def test_a_batch_num_generations_does_not_divide_is_a_config_error(tmp_path, tiny_model):
    from posttrain.pipeline.validate import validate

    report = validate(config(tmp_path, tiny_model, num_generations=3))
    assert any("stages.rl.trainer" in p and "not a whole number of groups of num_generations 3: set "
               "per_device_train_batch_size: 6, or num_generations to one of 2, 4" in p for p in report.problems), report.problems


def test_unknown_reward_names_the_closest(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model)
    cfg["stages"][0]["rewards"] = ["sample_size_estimaton"]
    with pytest.raises(ConfigError, match="did you mean 'sample_size_estimation'"):
        run(cfg)


def test_sft_records_are_refused_by_grpo(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model)
    cfg["stages"][0]["data"] = {"path": str(write_jsonl(tmp_path / "c.jsonl", [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])), "format": "openai"}
    with pytest.raises(PosttrainError, match="openai makes conversation records"):
        run(cfg)


def search_config(tmp_path, tiny_model, **search):
    cfg = config(tmp_path, tiny_model)
    rows = [{"prompt": [{"role": "user", "content": "Find the trials."}], "data_source": "study_search",
             "ground_truth": {"relevant_pmids": ["1"]}, "extra_info": {}}] * 4
    cfg["stages"][0].update(data={"path": str(write_jsonl(tmp_path / "search.jsonl", rows)), "format": "rl_prompt"},
                            rewards=["study_search"], **search)
    return cfg


def corpus(tmp_path, titles=("heart failure trial", "asthma trial")):
    return write_jsonl(tmp_path / "corpus.jsonl", [{"pmid": str(i), "title": t, "abstract": "randomized"}
                                                  for i, t in enumerate(titles, 1)])


@pytest.fixture
def search_backend():
    """The search module as the stage leaves it (it configures this process's backend), reset afterwards."""
    from posttrain.rewards import search

    previous = dict(search._configured)
    yield search
    search.configure(**previous)


def test_a_search_corpus_is_indexed_once_into_the_stage_dir(tmp_path, tiny_model, search_backend):
    from posttrain.rewards.search.index import corpus_index

    run_dir = run(search_config(tmp_path, tiny_model, search_corpus=str(corpus(tmp_path))))
    indexes = list((run_dir / "rl").glob("search_index-*.db"))
    assert len(indexes) == 1
    # the stage configured this process's backend with it: the reward finds PMID 1 through it
    assert search_backend.search("heart failure", 10) == ["1"]
    built = indexes[0].stat().st_mtime_ns
    assert corpus_index(str(tmp_path / "corpus.jsonl"), run_dir / "rl") == str(indexes[0])
    assert indexes[0].stat().st_mtime_ns == built  # same content: not rebuilt


def test_search_settings_are_checked(tmp_path, tiny_model, monkeypatch):
    from posttrain.pipeline.validate import validate

    for name in ("POSTTRAIN_SEARCH_INDEX", "POSTTRAIN_SEARCH_BACKEND"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(ConfigError, match="search_index .* or search_corpus .*not both"):
        run(search_config(tmp_path, tiny_model, search_index="x.db", search_corpus="c.jsonl"))
    with pytest.raises(ConfigError, match="search_backend"):
        run(search_config(tmp_path, tiny_model, search_backend="pubmed"))
    problems = validate(search_config(tmp_path, tiny_model)).problems
    assert any("rewards study_search run PubMed queries" in p and "search_backend: ncbi" in p for p in problems)
    (tmp_path / "not-an-index.db").write_text("hello")
    problems = validate(search_config(tmp_path, tiny_model, search_index=str(tmp_path / "not-an-index.db"))).problems
    assert any("not-an-index.db" in p and "posttrain search build-index" in p for p in problems), problems
    problems = validate(search_config(tmp_path, tiny_model, search_corpus=str(tmp_path / "missing.jsonl"))).problems
    assert any("search_corpus" in p and "no such file" in p for p in problems), problems
    assert validate(search_config(tmp_path, tiny_model, search_backend="ncbi")).ok


def test_the_search_corpus_content_is_part_of_the_fingerprint(tmp_path, tiny_model):
    from posttrain.config import load_config
    from posttrain.pipeline import stage_fingerprint

    cfg = load_config(search_config(tmp_path, tiny_model, search_corpus=str(corpus(tmp_path))))
    before = stage_fingerprint(cfg.stages[0], cfg, "model")
    corpus(tmp_path, titles=("heart failure trial", "asthma trial", "gout trial"))
    assert stage_fingerprint(cfg.stages[0], cfg, "model") != before


def test_an_explicit_generation_batch_gets_its_own_fix(tmp_path, tiny_model):
    from posttrain.pipeline.validate import validate

    problems = validate(config(tmp_path, tiny_model, generation_batch_size=12, num_generations=8)).problems
    assert any("generation_batch_size 12" in p and "set generation_batch_size: 16" in p for p in problems), problems


def test_a_stage_without_search_settings_does_not_inherit_an_earlier_one(tmp_path, tiny_model, search_backend,
                                                                        monkeypatch):
    monkeypatch.delenv("POSTTRAIN_SEARCH_INDEX", raising=False)
    search_backend.configure(index=str(tmp_path / "an-earlier-stage.db"))
    run(config(tmp_path, tiny_model))
    assert search_backend._configured == {}


def test_an_index_from_the_environment_is_part_of_the_fingerprint(tmp_path, tiny_model, monkeypatch):
    from posttrain.config import load_config
    from posttrain.pipeline import stage_fingerprint

    monkeypatch.setenv("POSTTRAIN_SEARCH_INDEX", str(corpus(tmp_path)))  # any file: only its bytes count here
    cfg = load_config(search_config(tmp_path, tiny_model))
    before = stage_fingerprint(cfg.stages[0], cfg, "model")
    corpus(tmp_path, titles=("gout trial",))
    assert stage_fingerprint(cfg.stages[0], cfg, "model") != before
    monkeypatch.setenv("POSTTRAIN_SEARCH_BACKEND", "ncbi")
    assert stage_fingerprint(cfg.stages[0], cfg, "model") != before


def gsm8k_parquet(tmp_path):
    """Rows exactly as VERL's examples/data_preprocess/gsm8k.py writes them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": f"What is {i} + {i}? "
                                                        "Let's think step by step and output the final answer "
                                                        "after \"####\"."}],
             "ability": "math", "reward_model": {"style": "rule", "ground_truth": str(2 * i)},
             "extra_info": {"split": "train", "index": i, "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}",
                            "question": f"What is {i} + {i}?"}} for i in range(8)]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("reward", ["gsm8k.py:compute_score", "shapes.py:compute_score"])
def test_verl_reward_files_train_unchanged_on_verl_parquet(tmp_path, tiny_model, reward):
    from pathlib import Path

    from posttrain.pipeline.validate import validate

    spec = str(Path(__file__).parents[1] / "rewards" / "verl" / reward)
    cfg = config(tmp_path, tiny_model)
    cfg["stages"][0].update(data={"path": str(gsm8k_parquet(tmp_path)), "format": "verl"}, rewards=[spec])
    report = validate(cfg)
    assert report.ok, report.problems
    form = "VERL per-task" if reward.startswith("gsm8k") else "VERL keyword"
    assert any(f"stages.rl.rewards.0: {spec}: {form} form" in note for note in report.notes), report.notes
    run_dir = run(cfg)
    assert read_manifest(run_dir)["stages"]["rl"]["status"] == "done"
    lines = [json.loads(line) for line in (run_dir / "rl" / "trainer_log.jsonl").read_text().splitlines()]
    assert any("rewards/compute_score/mean" in line for line in lines)
