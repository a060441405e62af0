"""runs/details.py: what a run page shows of a stage (resolved config, error, log, eval tables, generations side by
side) and the config diff of the compare view, read only inside the run directory."""

import json

from posttrain.runs.details import config_diff, stage_details


def _run(folder, seed=1, stages=None):
    folder.mkdir(parents=True)
    stages = stages or {"sft": {"type": "sft", "status": "failed", "error": "ValueError: boom"},
                        "eval": {"type": "eval", "status": "done"}}
    (folder / "manifest.json").write_text(json.dumps({"name": folder.name, "stage_order": list(stages),
                                                      "stages": stages}))
    for name in stages:
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "config.yaml").write_text(f"seed: {seed}\nstage:\n  name: {name}\n")
    return folder


def _eval(run):
    (run / "eval" / "metrics.json").write_text(json.dumps({
        "metric_names": ["exact_match"], "figures": {"base": {"exact_match": 0.1}, "sft": {"exact_match": 0.6}},
        "intervals": {"base": {"exact_match": [0.0, 0.2]}, "sft": {"exact_match": [0.4, 0.8]}},
        "comparisons": [{"model": "sft", "against": "base", "figures": {"exact_match": {"difference": 0.5}}}]}))
    for model, outputs in (("sft", ["four", "<b>five</b>"]), ("base", ["x", "y", "z"])):
        (run / "eval" / model).mkdir()
        with open(run / "eval" / model / "predictions.jsonl", "w") as f:
            for i, output in enumerate(outputs):
                f.write(json.dumps({"prompt": [{"role": "user", "content": f"q{i}"}], "reference": "r",
                                    "output": output}) + "\n")


def test_a_failed_stage_shows_its_error_config_and_log(tmp_path):
    run = _run(tmp_path / "run")
    (run / "sft" / "trainer_log.jsonl").write_text("")
    details = stage_details(run, "sft")
    assert details["error"] == "ValueError: boom" and details["status"] == "failed"
    assert details["config"].startswith("seed: 1") and details["log"] == str(run / "sft" / "trainer_log.jsonl")
    assert stage_details(run, "nope") is None


def test_an_eval_stage_has_its_tables_and_generations_side_by_side_in_model_order(tmp_path):
    run = _run(tmp_path / "run")
    _eval(run)
    details = stage_details(run, "eval")
    assert details["intervals"]["sft"]["exact_match"] == [0.4, 0.8]
    assert details["comparisons"][0]["against"] == "base"
    generations = details["generations"]
    assert generations["models"] == ["base", "sft"]  # metrics.json's order, not the folders'
    assert generations["rows"][0] == {"prompt": "user: q0", "reference": "r", "outputs": {"base": "x", "sft": "four"}}
    assert generations["rows"][1]["outputs"]["sft"] == "<b>five</b>"  # as written: the page inserts it as text
    assert generations["rows"][2]["outputs"] == {"base": "z"}


def test_a_stage_named_to_leave_the_run_is_not_read(tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "config.yaml").write_text("password: x\n")
    run = _run(tmp_path / "run", stages={"../secret": {"type": "sft", "status": "done"}})
    assert stage_details(run, "../secret") is None


def test_the_config_diff_names_each_stage_and_what_changed(tmp_path):
    a = _run(tmp_path / "a", seed=1)
    b = _run(tmp_path / "b", seed=2, stages={"sft": {"type": "sft", "status": "done"}})
    diffs = {d["stage"]: d for d in config_diff(a, b)}
    assert "-seed: 1" in diffs["sft"]["diff"] and "+seed: 2" in diffs["sft"]["diff"]
    assert diffs["eval"]["in"] == [0] and diffs["eval"]["written"] == [True, False]
    assert config_diff(a, a)[0]["diff"] == []
