"""posttrain: take an open language model through a domain's post-training path from one YAML file.

The Python API is what the CLI calls: `posttrain.run(path_or_config, overrides)`,
`posttrain.load_config`, the data functions in `posttrain.data`, and the stages
in `posttrain.stages`. Heavy libraries load only when a function needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"


def run(source, overrides=(), **kwargs):
    """Run a pipeline (a YAML path, a dict or a PipelineConfig); return the run directory."""
    from posttrain.pipeline import run as _run

    return _run(source, overrides, **kwargs)


def load_config(source, overrides=()):
    from posttrain.config import load_config as _load

    return _load(source, overrides)


__all__ = ["run", "load_config", "__version__"]
