"""Every recipe in recipes/ validates against the tiny model (run from the repo root, as users do)."""

from __future__ import annotations

from pathlib import Path

import pytest

from posttrain.config import load_config
from posttrain.validate import validate

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("*.yaml")) + sorted((ROOT / "recipes").glob("*.yml"))


def test_there_are_recipes():
    assert "quickstart.yaml" in [p.name for p in RECIPES]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(recipe, tiny_model, monkeypatch):
    monkeypatch.chdir(ROOT)
    report = validate(str(recipe.relative_to(ROOT)), [f"model={tiny_model}"])
    assert report.problems == []
    assert report.ok
    config = load_config(recipe.relative_to(ROOT), [f"model={tiny_model}"])
    data_notes = [n for n in report.notes if ".data: " in n or ".eval_data: " in n]
    # every data source was read: a note with its valid record count, none empty
    assert data_notes, report.notes
    for note in data_notes:
        count = int(note.split(": ")[2].split(" valid records")[0])
        assert count > 0, note
    assert report.notes[0].startswith(f"config: {len(config.stages)} stage(s)")


def test_quickstart_shape(tiny_model, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = load_config("recipes/quickstart.yaml", [f"model={tiny_model}"])
    assert [s.name for s in config.stages] == ["sft1", "sft2"]
    assert config.stage("sft2").model == "sft1"
    assert config.model == str(tiny_model)
    report = validate("recipes/quickstart.yaml", [f"model={tiny_model}"])
    assert report.ok, report.problems
    assert sum("over max_length 256" in n for n in report.notes) == 3  # sft1 data, sft2 data and eval data
