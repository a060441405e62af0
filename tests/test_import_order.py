"""posttrain's imports keep the order docs/architecture.md writes down, and the checker catches what breaks it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import shutil

from tests.import_order import cycles, modules, problems, read_imports, read_order

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "posttrain"
ORDER_DOCUMENT = ROOT / "docs" / "architecture.md"


def lazy_allowed(package: Path) -> frozenset[str]:
    """Where posttrain's own modules may be imported inside functions (docs/architecture.md says why): the
    package face, whose run() loads the pipeline when called, and the CLI's commands, which load what they run
    when they run, so that `posttrain --help` loads no training stack."""
    name = package.name
    return frozenset(m for m in modules(package) if m == name or m.startswith(f"{name}.cli"))


def test_posttrain_keeps_the_order_its_architecture_document_writes_down():
    assert problems(PACKAGE, read_order(ORDER_DOCUMENT), lazy_allowed(PACKAGE)) == []


def test_an_upward_import_added_to_posttrain_fails_the_check(tmp_path):
    copy = tmp_path / "posttrain"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "data" / "io.py", "a") as f:  # data reading the pipeline: far up the order
        f.write("\n\ndef _late():\n    from posttrain.pipeline import run\n    return run\n")
    found = problems(copy, read_order(ORDER_DOCUMENT), lazy_allowed(copy))
    line = len((copy / "data" / "io.py").read_text().splitlines()) - 1
    assert f"{copy / 'data' / 'io.py'}:{line}: posttrain.data.io imports posttrain.pipeline, up the order " \
           "(posttrain.data -> posttrain.pipeline)" in found
    assert any(p.startswith("import cycle among") and "posttrain.data.io" in p for p in found)
    assert f"{copy / 'data' / 'io.py'}:{line}: posttrain.data.io imports posttrain.pipeline inside a function; " \
           "imports of the package go at the top" in found


def test_no_module_of_posttrain_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path / "pkg"


ORDER = [["pkg.top"], ["pkg.low"], ["pkg.ground"]]


def test_a_package_that_keeps_the_order_has_no_problems(tmp_path):
    package = _package(tmp_path, {
        "__init__.py": "",
        "top.py": "from pkg import low\nimport json\n",
        "low/__init__.py": "from pkg.low import part\n",
        "low/part.py": "from pkg.ground import thing\n",
        "ground.py": "thing = 1\n",
    })
    assert problems(package, ORDER) == []


def test_an_upward_import_is_named_with_its_file_and_line(tmp_path):
    package = _package(tmp_path, {
        "top.py": "x = 1\n",
        "low.py": "import json\nfrom pkg.top import x\n",
        "ground.py": "",
    })
    assert problems(package, ORDER) == [
        f"{package / 'low.py'}:2: pkg.low imports pkg.top, up the order (pkg.low -> pkg.top)"]


def test_an_upward_import_inside_a_function_is_caught_and_so_is_the_cycle_it_closes(tmp_path):
    package = _package(tmp_path, {
        "top.py": "from pkg import low\n",
        "low.py": "def f():\n    from pkg import top\n    return top\n",
        "ground.py": "",
    })
    found = problems(package, ORDER)
    assert f"{package / 'low.py'}:2: pkg.low imports pkg.top, up the order (pkg.low -> pkg.top)" in found
    assert f"{package / 'low.py'}:2: pkg.low imports pkg.top inside a function; imports of the package go at " \
           "the top" in found
    assert "import cycle among 2 modules: pkg.low, pkg.top" in found


def test_two_entries_of_one_row_may_not_import_each_other(tmp_path):
    package = _package(tmp_path, {"a.py": "from pkg import b\n", "b.py": ""})
    assert problems(package, [["pkg.a", "pkg.b"]]) == [
        f"{package / 'a.py'}:1: pkg.a imports pkg.b, across the order (pkg.a -> pkg.b)"]


def test_a_cycle_inside_one_package_is_caught_though_no_row_is_crossed(tmp_path):
    package = _package(tmp_path, {
        "low/__init__.py": "from pkg.low.a import x\n",
        "low/a.py": "from pkg.low import b\nx = 1\n",
        "low/b.py": "from pkg.low import a as _a\n",
    })
    assert problems(package, [["pkg.low"]]) == ["import cycle among 2 modules: pkg.low.a, pkg.low.b"]


def test_relative_imports_and_from_imports_of_names_resolve_to_the_module(tmp_path):
    package = _package(tmp_path, {
        "low/__init__.py": "",
        "low/a.py": "from . import b\nfrom .b import name\nfrom ..ground import thing\n",
        "low/b.py": "name = 1\n",
        "ground.py": "thing = 1\n",
    })
    found = {(i.source, i.target) for i in read_imports(package)}
    assert found == {("pkg.low.a", "pkg.low.b"), ("pkg.low.a", "pkg.ground")}


def test_a_module_the_order_does_not_place_is_a_problem(tmp_path):
    package = _package(tmp_path, {"stray.py": "import os\n", "empty/__init__.py": ""})
    assert problems(package, ORDER) == [f"{package / 'stray.py'}: module pkg.stray is in no row of the order"]


def test_cycles_reports_each_strongly_connected_component_once(tmp_path):
    package = _package(tmp_path, {
        "a.py": "from pkg import b\n", "b.py": "from pkg import c\n", "c.py": "from pkg import a\n",
        "d.py": "from pkg import a\n",
    })
    assert cycles(read_imports(package)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_order_is_read_from_the_architecture_document():
    order = read_order(ROOT / "docs" / "architecture.md")
    assert order[0] == ["posttrain"] and order[-1] == ["posttrain.errors"]
    assert ["posttrain.runs", "posttrain.machine"] in order
