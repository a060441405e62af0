"""Check a pipeline without training: config, models, data, lengths.

The first minutes of a long GPU job should not be spent finding a typo in a
data file. `validate` loads the config, checks every input model directory
(config, tokenizer, chat template), runs the data doctor over every data
source in its declared format, and counts records over `max_length`; it
lists every problem it finds rather than stopping at the first.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from posttrain import rewards, stages as stage_table
from posttrain.config import load_config, reward_names
from posttrain.data.check import check
from posttrain.data.formats import get_format
from posttrain.data.sources import resolve_sources
from posttrain.errors import PosttrainError
from posttrain.evaluation.examples import RECORD_TYPES, load_examples, source_format
from posttrain.evaluation.metrics import PAIR_METRICS, check_examples
from posttrain.launch import launched
from posttrain.models.loading import load_tokenizer
from posttrain.rewards.search import ncbi
from posttrain.rewards.search.index import SearchIndex
from posttrain.scoring import model_kind
from posttrain.stages.eval import missing_references, unknown_models
from posttrain.training import requirements


@dataclass
class ValidationReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(source, overrides=()) -> ValidationReport:
    report = ValidationReport()
    try:
        config = load_config(source, overrides)
    except PosttrainError as e:
        report.problems.append(str(e))
        return report
    report.notes.append(f"config: {len(config.stages)} stage(s): "
                        + ", ".join(f"{s.name} ({s.type})" for s in config.stages))
    _check_output_dir(Path(config.output_dir), report)

    stage_names: set[str] = set()
    base_ok = _check_model(config.model, config.template, config.trust_remote_code, report, "model")
    for stage in config.stages:
        ref = stage.model or "base"
        template = getattr(stage, "template", None) or config.template
        if ref == "base":
            tokenizer_dir = config.model if base_ok else None
        elif ref in stage_names:
            tokenizer_dir = config.model if base_ok else None  # the earlier stage keeps the base tokenizer
        elif ref in {s.name for s in config.stages}:
            report.problems.append(f"stages.{stage.name}.model: {ref!r} is a later stage; start from an earlier one")
            tokenizer_dir = None
        else:
            ok = _check_model(ref, template, config.trust_remote_code, report, f"stages.{stage.name}.model")
            tokenizer_dir = ref if ok else None
        stage_names.add(stage.name)
        # what this machine lacks for the GPU-only options; a pipeline-wide one (attn_implementation) is named once
        found = stage_table.problems(stage, config, launched(stage, config))
        report.problems += [p for p in found if p not in report.problems]
        report.notes += [n for n in stage_table.notes(stage, config) if n not in report.notes]
        # build the trainer config exactly as a run would: the TRL class's own checks run too
        buildable = requirements.buildable(stage) if stage_table.trains(stage.type) else stage
        try:
            stage_table.get(stage.type).plan(buildable, config, Path(tempfile.gettempdir()) / "posttrain-validate")
        except PosttrainError as e:
            report.problems.append(str(e))
        if stage.type == "grpo":
            _check_search(stage, report)
            _check_reward_models(stage, config, stage_names, report)
        if stage.type == "eval":
            _check_search(stage, report)
            _check_eval(stage, config, template, report)
            continue
        max_length = stage.trainer.get("max_length", 1024) or sys.maxsize  # None: nothing is cut
        for field_name in ("data", "eval_data"):
            spec = getattr(stage, field_name, None)
            if spec is not None:
                _check_data(stage, field_name, spec, tokenizer_dir, template, max_length, report)
    return report


def _check_eval(stage, config, template, report) -> None:
    """An eval stage's models (base, earlier stages, model directories) and its data: each record, and what each
    metric needs of it (a reference text, a judge prompt)."""
    where = f"stages.{stage.name}"
    report.problems += unknown_models(stage, config) + missing_references(stage, config)
    named = {"base"} | {s.name for s in config.stages}
    for ref in stage.models:
        if ref not in named and Path(ref).exists():
            _check_model(ref, template, config.trust_remote_code, report, f"{where}.models.{ref}")
    try:
        sources = resolve_sources(stage.data)
    except PosttrainError as e:
        report.problems.append(f"{where}.data: {e}")
        return
    scores_pairs = any(name in PAIR_METRICS for name in stage.metrics)  # preference pairs, nothing generated
    clean = True
    for source in sources:
        try:
            name = source_format(source, records=("preference",) if scores_pairs else RECORD_TYPES)
            result = check(source.path, record_type=get_format(name).RECORD, fmt=name, columns=source.columns,
                           tags=source.tags)
        except PosttrainError as e:
            report.problems.append(f"{where}.data: {e}")
            clean = False
            continue
        errors = [f for f in result.findings if f.level == "error"]
        report.problems += [f"{f.path or source.path}:{f.line}: {f.message}" for f in errors]
        clean = clean and not errors
        report.notes.append(f"{where}.data: {source.path}: {result.stats.get('valid', 0)} valid records ({name})")
    if clean and not scores_pairs:
        try:
            check_examples(stage.metrics, load_examples(sources, stage.limit)[0])
        except PosttrainError as e:
            report.problems.append(f"{where}.metrics: {e}")


def _check_model(path: str, template, trust_remote_code, report, where) -> bool:
    root = Path(path)
    if not root.exists():
        if "/" in path and not path.startswith((".", "/")):
            report.notes.append(f"{where}: {path} is not a local directory; it will be loaded from the hub")
        else:
            report.problems.append(f"{where}: {path}: no such model directory")
        return False
    if not (root / "config.json").exists() and not (root / "adapter_config.json").exists():
        report.problems.append(f"{where}: {path}: no config.json; expected a Hugging Face model directory")
        return False

    try:
        load_tokenizer(path, template=template, trust_remote_code=trust_remote_code)
    except PosttrainError as e:
        report.problems.append(f"{where}: {e}")
        return False
    report.notes.append(f"{where}: {path}: config, tokenizer and chat template found")
    return True


def _check_output_dir(output_dir: Path, report) -> None:
    """Outside the working directory is allowed, and said; where nothing can be written is a problem."""
    where = output_dir.resolve()
    if not where.is_relative_to(Path.cwd().resolve()):
        report.notes.append(f"output_dir: {where} is outside the working directory ({Path.cwd()}); runs go there")
    existing = next(p for p in (where, *where.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        report.problems.append(f"output_dir: {where}: {existing} is not a directory this user can write to")


def _check_reward_models(stage, config, earlier: set[str], report) -> None:
    """A `model:` reward names an earlier stage (its output, once trained) or a reward model directory; a custom
    reward function's note says which signature form it is called in."""
    for i, reward in enumerate(stage.rewards):
        if reward.name and ":" in reward.name:
            form = rewards.get(reward.name).describe()
            report.notes.append(f"stages.{stage.name}.rewards.{i}: {reward.name}: {form}")
        if not reward.model:
            continue
        where = f"stages.{stage.name}.rewards.{i}.model"
        if reward.model in {s.name for s in config.stages}:
            if reward.model not in earlier - {stage.name}:
                report.problems.append(f"{where}: {reward.model!r} is not an earlier stage; a reward model must be "
                                       "trained before the stage that scores with it")
            continue
        try:
            report.notes.append(f"{where}: {reward.model}: a {model_kind(reward.model).replace('_', '-')} reward model")
        except PosttrainError as e:
            report.problems.append(f"{where}: {e}")


def _check_search(stage, report) -> None:
    """A study-search reward needs a backend: an index that opens, or live PubMed."""
    where = f"stages.{stage.name}"
    if stage.search_index:
        try:
            count = SearchIndex(stage.search_index).db.execute("SELECT count(*) FROM docs").fetchone()[0]
            report.notes.append(f"{where}.search_index: {stage.search_index}: {count} documents")
        except Exception as e:  # sqlite3 errors on a file that is not an index
            report.problems.append(f"{where}.search_index: {stage.search_index}: {e}; "
                                   "build one with `posttrain search build-index CORPUS INDEX.db`")
    if stage.search_corpus:
        if Path(stage.search_corpus).is_file():
            report.notes.append(f"{where}.search_corpus: {stage.search_corpus}: indexed when the stage starts")
        else:
            report.problems.append(f"{where}.search_corpus: {stage.search_corpus}: no such file")
    if (stage.search_backend or os.environ.get("POSTTRAIN_SEARCH_BACKEND")) == "ncbi":
        rate = ncbi.RATE_WITH_KEY if os.environ.get("NCBI_API_KEY") else ncbi.RATE_WITHOUT_KEY
        report.notes.append(f"{where}.search_backend: live PubMed, at most {rate:g} requests/s "
                            f"({ncbi.RATE_WITH_KEY:g} with NCBI_API_KEY set in the environment)")
        return
    searching = [name for name in reward_names(stage) if name.startswith("study_search")]
    if searching and not (stage.search_index or stage.search_corpus or os.environ.get("POSTTRAIN_SEARCH_INDEX")):
        report.problems.append(f"{where}: rewards {', '.join(searching)} run PubMed queries but the stage has no "
                               "search_index: (an index from `posttrain search build-index`), no search_corpus: "
                               "(a PubMed-style corpus to index) and no `search_backend: ncbi`")


def _check_data(stage, field_name, spec, tokenizer_dir, template, max_length, report) -> None:
    where = f"stages.{stage.name}.{field_name}"
    try:
        sources = resolve_sources(spec)
    except PosttrainError as e:
        report.problems.append(f"{where}: {e}")
        return
    # training records that also sit in the stage's evaluation data would make its eval loss a training loss
    held_out = []
    if field_name == "data" and getattr(stage, "eval_data", None):
        try:
            held_out = [s.path for s in resolve_sources(stage.eval_data)]
        except PosttrainError:
            pass  # reported when eval_data itself is checked
    for source in sources:
        try:
            result = check(source.path, record_type=stage_table.record_type(stage.type), reader=stage.type,
                           fmt=source.format, model=tokenizer_dir,
                           max_length=max_length, columns=source.columns, tags=source.tags, template=template,
                           other_splits=held_out)
        except PosttrainError as e:
            report.problems.append(f"{where}: {e}")
            continue
        for finding in result.findings:
            if finding.level == "error":
                report.problems.append(f"{finding.path or source.path}:{finding.line}: {finding.message}")
        stats = result.stats
        note = f"{where}: {source.path}: {stats.get('valid', 0)} valid records"
        tokens = stats.get("tokens")
        if tokens:
            note += (f"; tokens min {tokens['min']}, median {tokens['median']:.0f}, max {tokens['max']}; "
                     f"{tokens['over_max_length']} over max_length {max_length}")
        report.notes.append(note)
