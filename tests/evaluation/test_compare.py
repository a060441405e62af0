"""posttrain/evaluation/compare.py: nested figures flattened, models side by side in Markdown."""

from __future__ import annotations

from posttrain.evaluation.compare import figures, markdown_table


def test_judge_figures_are_flattened_without_their_counts():
    metrics = {"bleu": 12.5, "judge": {"count": 4, "accuracy": 0.5, "unparsable": 0.25, "pairs": 2,
                                       "position_consistency": 1.0}}
    assert figures(metrics) == {"bleu": 12.5, "judge.accuracy": 0.5, "judge.unparsable": 0.25,
                                "judge.position_consistency": 1.0}


def test_markdown_table_rows_are_models_columns_the_union_of_figures():
    table = markdown_table({"base": {"bleu": 1.23456, "rouge1": 0.5}, "sft": {"bleu": 20.0, "reward:x": -2.0}})
    assert table.splitlines() == [
        "| model | bleu | rouge1 | reward:x |",
        "| --- | ---: | ---: | ---: |",
        "| base | 1.235 | 0.5 |  |",
        "| sft | 20 |  | -2 |",
    ]
