"""The machine the recipe translations see: a CPU with nothing optional installed, unless a test says otherwise
(test_llamafactory.gpu), so what a recipe becomes does not depend on where the suite runs."""

from __future__ import annotations

import pytest

from posttrain.integrations import llamafactory


@pytest.fixture(autouse=True)
def machine(monkeypatch):
    monkeypatch.setattr(llamafactory, "cuda", lambda: False)
    monkeypatch.setattr(llamafactory, "has_package", lambda name: False)
    monkeypatch.setattr(llamafactory, "trackers", lambda: [])
