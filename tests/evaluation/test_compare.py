"""posttrain/evaluation/compare.py: nested figures flattened, models side by side in Markdown."""

from __future__ import annotations

from posttrain.evaluation.compare import baselines, figures, markdown_table, stage_baselines


def test_judge_figures_are_flattened_without_their_counts_and_baseline():
    metrics = {"bleu": 12.5, "judge": {"count": 4, "accuracy": 0.5, "unparsable": 0.25, "pairs": 2,
                                       "position_consistency": 1.0, "majority_baseline": 0.75}}
    assert figures(metrics) == {"bleu": 12.5, "judge.accuracy": 0.5, "judge.unparsable": 0.25,
                                "judge.position_consistency": 1.0}
    assert baselines(metrics) == {"judge.accuracy": 0.75}


def test_reward_model_accuracy_has_the_chance_baseline():
    assert baselines({"rm_accuracy": 0.8, "rm_margin": 1.2}) == {"rm_accuracy": 0.5}
    assert baselines({"bleu": 3.0}) == {}
    models = {"base": {"ref": "base", "metrics": {"judge": {"accuracy": 0.5, "majority_baseline": 0.625}}},
              "broken": {"ref": "x"}}
    assert stage_baselines(models) == {"judge.accuracy": 0.625}


def test_the_baseline_is_a_line_under_the_table_naming_the_models_not_above_it():
    by_model = {"base": {"judge.accuracy": 0.5}, "sft": {"judge.accuracy": 0.7}, "judge": {"judge.accuracy": 0.9},
                "tiny": {"judge.accuracy": 0.55}}
    # base's interval reaches below 0.6 and sft's low end is 0.6 itself: neither lies above; judge's does; tiny has
    # no interval, and its value is below
    intervals = {"base": {"judge.accuracy": [0.3, 0.7]}, "sft": {"judge.accuracy": [0.6, 0.8]},
                 "judge": {"judge.accuracy": [0.8, 1.0]}}
    table = markdown_table(by_model, intervals, {"judge.accuracy": 0.6})
    assert table.splitlines() == [
        "| model | judge.accuracy |",
        "| --- | ---: |",
        "| base | 0.5 [0.3, 0.7] |",
        "| sft | 0.7 [0.6, 0.8] |",
        "| judge | 0.9 [0.8, 1] |",
        "| tiny | 0.55 |",
        "",
        "majority-class baseline (always the most common label): judge.accuracy 0.6; not above it (95 % interval's "
        "low end at or below it): base, sft, tiny",
    ]
    above = markdown_table({"judge": by_model["judge"]}, intervals, {"judge.accuracy": 0.6})
    assert above.splitlines()[-1] == ("majority-class baseline (always the most common label): judge.accuracy 0.6; "
                                      "every model's 95 % interval lies above it")
    rm = markdown_table({"rm": {"rm_accuracy": 0.75}}, {"rm": {"rm_accuracy": [0.55, 0.9]}}, {"rm_accuracy": 0.5})
    assert rm.splitlines()[-1] == ("chance baseline (a coin flip on each non-tie pair): rm_accuracy 0.5; "
                                   "every model's 95 % interval lies above it")
    # a baseline of a figure the table does not show is left out
    assert markdown_table({"a": {"bleu": 1.0}}, {}, {"rm_accuracy": 0.5}) == markdown_table({"a": {"bleu": 1.0}})


def test_markdown_table_rows_are_models_columns_the_union_of_figures():
    table = markdown_table({"base": {"bleu": 1.23456, "rouge1": 0.5}, "sft": {"bleu": 20.0, "reward:x": -2.0}})
    assert table.splitlines() == [
        "| model | bleu | rouge1 | reward:x |",
        "| --- | ---: | ---: | ---: |",
        "| base | 1.235 | 0.5 |  |",
        "| sft | 20 |  | -2 |",
    ]


def test_an_eval_stage_rates_a_lower_unparsable_share_better_and_keeps_each_pairs_stream():
    from posttrain.evaluation.compare import compare_models
    from posttrain.evaluation.uncertainty import compare, figure_of

    # the base writes no verdict; the judge writes one every time and gets 40 of 60 right
    def rows(outputs):
        return [{"data_source": "pairwise_preference", "ground_truth": {"preferred": "A"},
                 "extra_info": {"pair_id": str(i), "swapped": False}, "output": out,
                 "scores": {"reward:pairwise_preference": float(out == "<preference>A</preference>")}}
                for i, out in enumerate(outputs)]

    table = {"base": rows(["no idea"] * 60),
             "judge": rows(["<preference>A</preference>"] * 40 + ["<preference>B</preference>"] * 20)}
    (found,) = compare_models([("judge", "base", "base")], table, ["judge", "reward:pairwise_preference"], 0)
    unparsable, accuracy = found["figures"]["judge.unparsable"], found["figures"]["judge.accuracy"]
    assert unparsable["difference"] == -1.0 and unparsable["better"] and not unparsable["worse"]
    assert accuracy["better"] and not accuracy["worse"]
    # the resamples still come from the pair's own stream, as before: the same interval as compare() gives it
    reward = [float(r["output"] == "<preference>A</preference>") for r in table["judge"]]
    alone = compare(figure_of([0.0] * 60), figure_of(reward), 60, seed=0,
                    name="reward:pairwise_preference:base:judge").as_dict()
    assert found["figures"]["reward:pairwise_preference"]["interval"] == alone["interval"]
