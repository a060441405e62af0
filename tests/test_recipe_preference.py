"""recipes/preference/pipeline.yaml, run as `make preference` runs it: SFT on a careless teacher, then DPO on
preference pairs and KTO on their answers unpaired, then base vs SFT vs DPO vs KTO on 64 held-out pairs. DPO and
KTO must each rank the held-out pairs better than the SFT model they started from, by more than the noise (the
paired interval's low end above 0); docs/preference.md quotes the tables, the README the two rows."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import (full_recipe_run, readme_lines_missing, run_recipe_as_make_does,
                            skip_unless_quoted_figures_apply)

ROOT = Path(__file__).resolve().parent.parent
DEMO_CORPORA = ["examples/data/glossary_alpaca.json", "examples/data/quickstart/sft.jsonl"]


def _run(tmp_path):
    return run_recipe_as_make_does(tmp_path, DEMO_CORPORA, "recipes/preference/pipeline.yaml")


def test_dpo_and_kto_rank_held_out_pairs_above_the_sft_model_they_started_from(tmp_path):
    run_dir = _run(tmp_path)
    evaluation = json.loads((run_dir / "eval" / "metrics.json").read_text())
    figures = evaluation["figures"]
    against = {(c["model"], c["against"]): c for c in evaluation["comparisons"]}
    for stage in ("dpo", "kto"):
        assert figures["base"]["preference_accuracy"] < figures["sft"]["preference_accuracy"] \
            < figures[stage]["preference_accuracy"], figures
        versus_sft = against[(stage, "sft")]["figures"]["preference_accuracy"]
        assert versus_sft["interval"][0] > 0 and versus_sft["better"], versus_sft  # above the noise
    dpo = json.loads((run_dir / "dpo" / "metrics.json").read_text())
    assert dpo["eval_rewards/accuracies"] > 0.9 and dpo["eval_rewards/margins"] > 0, dpo
    # DPO's own reward against the reference (the SFT model), on the held-out pairs: above chance, beyond the noise
    implicit = json.loads((run_dir / "implicit" / "metrics.json").read_text())
    for stage in ("dpo", "kto"):
        assert implicit["intervals"][stage]["implicit_reward_accuracy"][0] > 0.5, implicit["intervals"]
        assert implicit["models"][stage]["reference"]["model"].endswith("sft/model"), implicit["models"][stage]


@full_recipe_run("the README's preference table")
def test_the_readme_quotes_the_tables_make_preference_gives(tmp_path):
    from posttrain.stages.eval import comparison

    run_dir = _run(tmp_path)
    skip_unless_quoted_figures_apply("docs/preference.md")
    tables = comparison(run_dir / "eval")
    rows = [line for line in (tables + "\n" + comparison(run_dir / "implicit")).splitlines() if line.startswith("| ")]
    docs = (ROOT / "docs" / "preference.md").read_text(encoding="utf-8")
    assert [line for line in rows if line not in docs] == [], tables
    assert not readme_lines_missing([line for line in rows if line.startswith("| dpo | sft (input)")]), tables
