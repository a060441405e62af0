"""Reading a pipeline: YAML files plus dotted overrides, typed stage by stage through the stage table.

Every unknown key, at any depth, is an error naming the closest valid key. A LLaMA-Factory recipe is recognised
and translated before validation (posttrain/integrations/llamafactory.py); a file with no `stages:` is a
pipeline of one stage. This is the only config module that knows the stage types (posttrain/stages/).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from posttrain import stages as stage_table
from posttrain.config.messages import error_lines
from posttrain.config.schema import _STAGE_NAME, PipelineConfig, StageConfig
from posttrain.config.values import unusable_values
from posttrain.config.yaml_text import parse_yaml, read_yaml_file
from posttrain.errors import ConfigError, closest, cut
from posttrain.integrations import llamafactory

log = logging.getLogger("posttrain")  # as the recipe translation logs


def apply_override(raw: dict, override: str) -> None:
    """Apply `a.b.c=value` to the raw config; list items are addressed by `name` or index. `a.b+=value` appends
    to the list at a.b (made when absent)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key.path=value")
    path, text = override.split("=", 1)
    value = parse_yaml(text, f"override {path.strip()}") if text.strip() else ""
    append = path.endswith("+")
    path = path.removesuffix("+")
    keys = path.strip().split(".")
    node: Any = raw

    def put(held):
        if not append:
            return value
        if held is not None and not isinstance(held, list):
            raise ConfigError(f"override {path}+=: {path} is not a list")
        return (held or []) + (value if isinstance(value, list) else [value])

    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            index = next((i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == key), None)
            if index is None and key.isdigit() and int(key) < len(node):
                index = int(key)
            if index is None:
                names = [item.get("name") for item in node if isinstance(item, dict)]
                raise ConfigError(f"override {path}: no item named {key!r}{closest(key, [n for n in names if n])}")
            if last:
                node[index] = put(node[index])
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = put(node.get(key))
            else:
                node = node.setdefault(key, {})
        else:
            raise ConfigError(f"override {path}: {'.'.join(keys[:depth])} is not a mapping")


def load_raw(source: str | Path | dict) -> tuple[dict, Path | None]:
    if isinstance(source, dict):
        return copy.deepcopy(source), None
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    if path.is_dir():
        raise ConfigError(f"{path}: a directory; expected a pipeline YAML file")
    raw = read_yaml_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw, path


def load_config(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read a pipeline file (or a LLaMA-Factory recipe), apply overrides, validate."""
    raw, path = load_raw(source)
    if llamafactory.is_recipe(raw) or ("stages" not in raw and "type" in raw):
        # overrides may use the file's own keys (max_steps=2, trainer.max_steps=2) or the pipeline's
        own = [o for o in overrides
               if not o.startswith("stages.") and o.split("=", 1)[0].split(".")[0] not in _PIPELINE_KEYS]
        for override in own:
            apply_override(raw, override)
        overrides = [o for o in overrides if o not in own]
        recipe = llamafactory.is_recipe(raw)
        raw = llamafactory.to_pipeline(raw, path) if recipe else _single_stage(raw)
    else:
        recipe = False
    for override in overrides:
        apply_override(raw, override)
    # Stages are validated one by one first so each error can name its stage.
    lines: list[str] = []
    typed: list[StageConfig] = []
    stages = raw.get("stages")
    for i, stage in enumerate(stages if isinstance(stages, list) else []):
        name = stage.get("name", i) if isinstance(stage, dict) else i
        if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name):
            name = i  # a name that is no identifier would make the location itself unreadable
        kind = stage.get("type") if isinstance(stage, dict) else None
        if not isinstance(stage, dict):
            lines.append(f"stages.{i}: expected a mapping with name and type")
            continue
        if not isinstance(kind, str) or kind not in stage_table.STAGES:  # a list or a mapping is no type either
            known = stage_table.STAGES
            lines.append(f"stages.{name}.type: unknown stage type {cut(repr(kind))}; known: {', '.join(known)}"
                         f"{closest(kind, known) if isinstance(kind, str) else ''}")
            continue
        config_class = stage_table.config_class(kind)
        try:
            typed.append(config_class.model_validate(stage))
        except ValidationError as e:
            lines += error_lines(e, f"stages.{name}", config_class, stage)
            continue
        lines += unusable_values(getattr(typed[-1], "trainer", None) or {}, f"stages.{name}.trainer")
    if not lines and typed:
        raw = {**raw, "stages": typed}
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        # each stage's own errors were listed above
        stage_errors = bool(lines)
        lines += [line for line in error_lines(e, model=PipelineConfig, raw=raw)
                  if not (stage_errors and line.startswith("stages"))]
    if lines:
        head = f"{path}: invalid config" if path else "invalid config"
        raise ConfigError(head + "\n" + "\n".join(f"  {cut(line, 1000)}" for line in dict.fromkeys(lines)))
    if recipe:  # after the overrides: `output_dir=...` on the command line changes where it goes
        log.info("the model is written to %s/%s/model", config.output_dir, config.stages[0].name)
    return config


_PIPELINE_KEYS = {"name", "model", "output_dir", "seed", "dtype", "trust_remote_code", "template", "attn_implementation",
                  "launch"}


def _single_stage(raw: dict) -> dict:
    """A file with no `stages:` is a pipeline of one stage."""
    top = {k: v for k, v in raw.items() if k in _PIPELINE_KEYS}
    stage = {k: v for k, v in raw.items() if k not in _PIPELINE_KEYS}
    stage.setdefault("name", stage["type"])
    top.setdefault("name", stage["name"])
    return {**top, "stages": [stage]}


def from_dict(data: dict) -> PipelineConfig:
    """A PipelineConfig from its model_dump() (a launched worker's input): each stage typed by its type."""
    typed = [stage_table.config_class(stage["type"]).model_validate(stage) for stage in data["stages"]]
    return PipelineConfig.model_validate({**data, "stages": typed})
