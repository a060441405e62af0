"""report.html (posttrain/evaluation/report.py, report_html.py, plots.py) from a synthetic run directory the
tests write: no training, no model; each chart decodes, every name shows, model text is escaped."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from PIL import Image

from posttrain.errors import PosttrainError
from posttrain.evaluation import plots
from posttrain.evaluation.report import build_report, write_after_eval, write_report
from posttrain.evaluation.report_html import best_models

EVIL = "<script>alert('x')</script></pre><img src=http://example.com/x.png>"
MODELS = ("base", "sft", "grpo")
ORDER = ("sft", "ev_early", "rm", "grpo", "broken", "ev")


def _jsonl(path: Path, rows, cut_line: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row) + "\n" for row in rows)
    path.write_text(text + ('{"current_steps": 99, "lo' if cut_line else ""), encoding="utf-8")


def _config(run: Path, name: str, kind: str, **stage) -> None:
    (run / name).mkdir(parents=True, exist_ok=True)
    document = {"seed": 42, "dtype": "auto", "input_model": "/models/base" if "model" not in stage else f"{run}/x",
                "stage": {"name": name, "type": kind, **stage}}
    (run / name / "config.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")


def _eval_stage(run: Path, name: str, models) -> dict:
    by_model = {}
    for i, model in enumerate(models):
        prompt = [{"role": "system", "content": "Be brief."}]
        rows = [{"path": "data/q.jsonl", "line": line, "prompt": prompt + [{"role": "user",
                                                                            "content": f"question {line} {EVIL}"}],
                 "reference": f"answer {line} <b>ref</b>", "output": f"{model} says {line} {EVIL}",
                 "scores": {"bleu": 10.0 * i + line, "judge": {"verdict": "A"}}} for line in range(1, 13)]
        if model == "grpo":
            rows = rows[1:]  # one prompt this model never answered
        _jsonl(run / name / model / "predictions.jsonl", rows)
        metrics = {"bleu": 10.0 * i, "judge": {"accuracy": 0.25 * i, "unparsable": 0.5 - 0.1 * i, "count": 12}}
        (run / name / model / "metrics.json").write_text(json.dumps({"count": 12, "metrics": metrics}))
        by_model[model] = {"bleu": 10.0 * i, "judge.accuracy": 0.25 * i, "judge.unparsable": 0.5 - 0.1 * i}
    combined = {"models": {m: {"count": 12, "data": ["data/q.jsonl"], "generation": {"max_new_tokens": 64}}
                           for m in models}, "figures": by_model}
    _config(run, name, "eval", models=list(models), metrics=["bleu", "judge"])
    (run / name / "metrics.json").write_text(json.dumps(combined))
    return combined


def make_run(root: Path) -> Path:
    """A run as the pipeline leaves it: sft, an early eval, a reward model, GRPO, a failed stage, an eval."""
    run = root / "run"
    steps = range(1, 41)
    _config(run, "sft", "sft")
    _jsonl(run / "sft" / "trainer_log.jsonl",
           [{"current_steps": s, "loss": 5 / s, "mean_token_accuracy": 1 - 1 / s} for s in steps]
           + [{"current_steps": s, "eval_loss": 6 / s, "eval_mean_token_accuracy": 0.9 - 1 / s, "eval_runtime": 0.3}
              for s in (10, 20, 30, 40)], cut_line=True)
    _eval_stage(run, "ev_early", ("base", "sft"))
    _config(run, "rm", "reward_model", model="sft")
    _jsonl(run / "rm" / "trainer_log.jsonl", [{"current_steps": s, "loss": 0.7 - s / 100} for s in steps[:10]]
           + [{"current_steps": 10, "eval_accuracy": 0.8, "eval_margin": 1.5}])
    _config(run, "grpo", "grpo", model="sft")
    _jsonl(run / "grpo" / "trainer_log.jsonl",
           [{"current_steps": s, "loss": 0.01, "rewards/format/mean": s / 40, "rewards/cost$/mean": -1 + s / 80,
             "reward": s / 40 - 1 + s / 80} for s in steps])
    _config(run, "broken", "sft")  # failed before it logged a step
    _eval_stage(run, "ev", MODELS)
    manifest = {"name": "synthetic", "created": "2026-01-01T00:00:00+00:00", "versions": {"trl": "1.16.0",
                "transformers": "5.24.0"}, "git_commit": "0123456789abcdef", "stage_order": list(ORDER),
                "stages": {name: {"status": "done", "type": kind, "seconds": 1.5} for name, kind in
                           zip(ORDER, ("sft", "eval", "reward_model", "grpo", "sft", "eval"))}}
    manifest["stages"]["broken"].update(status="failed", error="RuntimeError: boom")
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def page(run_dir) -> str:
    return build_report(run_dir)


def _images(page: str) -> list[Image.Image]:
    images = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()
        images.append(image)
    return images


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_every_chart_is_an_embedded_png_that_decodes(page):
    images = _images(page)
    # sft: loss, token accuracy; rm: loss, accuracy, margin; grpo: loss, rewards; ev_early 3 and ev 3 figures
    assert len(images) == 2 + 3 + 2 + 3 + 3
    assert all(image.format == "PNG" and image.width > 400 and image.height > 250 for image in images)
    parser = _Tags()
    parser.feed(page)
    sources = [attrs.get("src") for tag, attrs in parser.tags if tag == "img"]
    assert len(sources) == len(images) and all(src.startswith("data:image/png;base64,") for src in sources)
    assert not {tag for tag, _ in parser.tags} & {"script", "link", "iframe", "object", "embed"}
    assert not [attrs for _, attrs in parser.tags if "href" in attrs]  # nothing is fetched or linked


def test_model_outputs_prompts_and_references_are_escaped(page):
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&lt;/pre&gt;&lt;img src=http://example.com/x.png&gt;"
    assert escaped in page
    assert "grpo says 2 &lt;script&gt;" in page and "question 1 &lt;script&gt;" in page
    assert "answer 1 &lt;b&gt;ref&lt;/b&gt;" in page


def test_every_model_and_figure_is_in_the_table_and_the_best_is_named(page):
    table = page[page.index("Evaluation: ev<"):]
    table = table[:table.index("</table>")]
    for name in (*MODELS, "bleu", "judge.accuracy", "judge.unparsable"):
        assert f">{name}<" in table
    assert "<b>grpo</b> (20)" in page  # bleu, highest wins
    assert "judge.unparsable: <b>grpo</b> (0.3)" in page  # lowest wins


def test_best_models_picks_the_lowest_error_and_keeps_ties():
    figures = {"a": {"bleu": 2.0, "judge.mean_abs_error": 0.1, "loss": 3.0},
               "b": {"bleu": 2.0, "judge.mean_abs_error": 0.4}}
    assert best_models(figures) == {"bleu": ["a", "b"], "judge.mean_abs_error": ["a"], "loss": ["a"]}


def test_a_nan_or_inf_figure_is_never_best_and_still_drawn():
    figures = {"a": {"bleu": float("nan"), "rougeL": float("inf")}, "b": {"bleu": 1.0, "rougeL": 0.5}}
    assert best_models(figures) == {"bleu": ["b"], "rougeL": ["b"]}
    uri = plots.bar_chart("bleu", ["a", "b"], [float("nan"), 1.0], {1})
    assert Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).format == "PNG"
    assert [title for title, _ in plots.training_charts([{"current_steps": 1, "loss": float("inf")},
                                                         {"current_steps": 2, "loss": 1.0}])] == ["loss"]


def test_side_by_side_shows_the_first_prompts_with_each_models_output(run_dir):
    page = build_report(run_dir, examples=3)
    section = page[page.index("Evaluation: ev<"):]
    assert section.count("<article class=example>") == 3
    first = section[section.index("#1 "):section.index("#2 ")]
    assert "data/q.jsonl:1" in first and "base says 1" in first and "sft says 1" in first
    assert "no output" in first  # grpo skipped line 1
    assert first.index(">base<") < first.index(">sft<") < first.index(">grpo<")
    assert "bleu <b>11</b>" in first  # sft's own score for this prompt
    assert "<article class=example>" not in build_report(run_dir, examples=0)


def test_training_curves_rewards_and_a_stage_without_a_log(page):
    assert 'alt="grpo: reward"' in page and 'alt="rm: eval_accuracy"' in page and 'alt="rm: eval_margin"' in page
    assert 'alt="sft: eval_runtime"' not in page  # speed, not quality
    assert "trainer_log.jsonl is missing (stage status: failed)" in page
    assert "mean reward" in page and "train loss 5 → 0.125" in page


def test_config_versions_and_commit_at_the_bottom(page):
    footer = page[page.index("Config and versions"):]
    config = yaml.safe_load(re.search(r"<pre class=config>(.*?)</pre>", footer, re.S).group(1)
                            .replace("&#x27;", "'").replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                            .replace("&amp;", "&"))
    assert [s["name"] for s in config["stages"]] == list(ORDER)
    assert config["name"] == "synthetic" and config["model"] == "/models/base" and config["seed"] == 42
    assert ">trl<" in footer and "1.16.0" in footer and "0123456789abcdef" in footer


def test_an_eval_stage_report_holds_the_stages_before_it(run_dir):
    page = build_report(run_dir, eval_stage="ev_early")
    assert "<h3>sft " in page and "<h3>grpo " not in page and "Evaluation: ev_early<" in page
    assert "Evaluation: ev<" not in page
    with pytest.raises(PosttrainError, match="no eval stage 'sft' .*ev_early, ev"):
        build_report(run_dir, eval_stage="sft")


def test_a_finishing_stage_and_a_stage_cut_short_are_shown(tmp_path):
    run = make_run(tmp_path)
    combined = json.loads((run / "ev" / "metrics.json").read_text())
    (run / "ev" / "metrics.json").unlink()
    (run / "ev_early" / "metrics.json").unlink()  # it stopped after its models' own files
    written = write_after_eval(run / "ev", combined)
    assert written == [run / "ev" / "report.html", run / "report.html"]
    page = written[1].read_text(encoding="utf-8")
    assert "Evaluation: ev<" in page and "judge.unparsable: <b>grpo</b>" in page
    early = page[page.index("Evaluation: ev_early<"):page.index("Evaluation: ev<")]
    assert ">sft<" in early and "bleu: <b>sft</b>" in page
    assert ">judge.accuracy<" in early and "judge.count" not in early  # a count is how much data, not how good


def test_written_atomically_and_a_failure_keeps_the_results(tmp_path, caplog):
    run = make_run(tmp_path)
    out = write_report(run, tmp_path / "out" / "r.html")
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert write_report(run, tmp_path / "out") == tmp_path / "out" / "report.html"  # a directory: report.html in it
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.html", "report.html"]
    (run / "manifest.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="posttrain"):
        assert write_after_eval(run / "ev", {"figures": {}}) == []
    assert "report.html not written" in caplog.text and "posttrain report" in caplog.text
    assert not list(run.glob("**/.report.html.*")) and (run / "ev" / "metrics.json").exists()


def test_not_a_run_directory(tmp_path):
    with pytest.raises(PosttrainError, match="no manifest.json; not a posttrain run directory"):
        build_report(tmp_path)
    with pytest.raises(PosttrainError, match="no such directory"):
        build_report(tmp_path / "missing")


def test_intervals_and_comparisons_are_shown_and_a_stage_that_did_not_beat_its_input_is_flagged():
    from posttrain.evaluation import report_html

    def result(difference, low, high, better=False, worse=False):
        return {"difference": difference, "interval": [low, high], "p_value": 0.5, "better": better, "worse": worse}

    stage = {"name": "ev", "models": {}, "figures": {"base": {"reward:x": -2.0}, "sft2": {"reward:x": 0.1},
                                                     "grpo": {"reward:x": 0.05}},
             "intervals": {"sft2": {"reward:x": [0.0, 0.3]}},
             "comparisons": [
                 {"model": "sft2", "against": "base", "relation": "input",
                  "figures": {"reward:x": result(2.1, 1.9, 2.3, better=True)}},
                 {"model": "grpo", "against": "sft2", "relation": "input",
                  "figures": {"reward:x": result(-0.05, -0.2, 0.1)}}]}
    page = report_html.evaluation(stage, [])
    assert "<span class=ci>[0, 0.3]</span>" in page
    assert page.count("did not beat its input") == 1
    assert "<th>grpo <span class=flag>did not beat its input</span></th>" in page
    assert "+2.1 [+1.9, +2.3] p=0.5<br><span class=ci>better</span>" in page


def test_the_majority_baseline_is_shown_and_a_judge_not_above_it_is_flagged():
    from posttrain.evaluation import report_html

    judge = {"count": 8, "accuracy": 0.5, "majority_baseline": 0.625}
    stage = {"name": "ev", "models": {m: {"metrics": {"judge": judge}} for m in ("base", "judge")},
             "figures": {"base": {"judge.accuracy": 0.5}, "judge": {"judge.accuracy": 0.875}},
             "intervals": {"base": {"judge.accuracy": [0.25, 0.75]}, "judge": {"judge.accuracy": [0.75, 1.0]}}}
    page = report_html.evaluation(stage, [])
    assert ("<p class=baseline>majority-class baseline (always the most common label): judge.accuracy 0.625; "
            "not above it (95 % interval&#x27;s low end at or below it): <span class=flag>base</span></p>") in page
    # base's cell carries the flag, the judge's (its interval lies above 0.625) does not
    assert "<span class=ci>[0.25, 0.75]</span><br><span class=flag>not above baseline</span></td>" in page
    assert page.count("not above baseline") == 1
    # without a baseline in the models' metrics (an older run), nothing is said
    older = report_html.evaluation({**stage, "models": {}}, [])
    assert "baseline" not in older
