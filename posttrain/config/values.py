"""Values in a stage's `trainer:` block that no run can use, refused when the file is read.

The block passes through to the TRL config class, which takes `learning_rate: .nan`, `max_length: -5` or
`per_device_train_batch_size: 0` and fails, or trains on nothing, only once the run is under way. posttrain's own
fields refuse NaN and infinity through their types (config/schema.py's Strict); these are the library's keys.
"""

from __future__ import annotations

import math
import re

# rates, coefficients and probabilities: a finite number or nothing
FINITE = re.compile(r"(^|_)(lr|learning_rate|rate|ratio|decay|beta\d?|epsilon(_high)?|temperature|top_p|min_p|coef|"
                    r"alpha|gamma|weight|smoothing_factor|margin)$")
# sizes and lengths: at least 1 when given
POSITIVE = re.compile(r"(^|_)(length|batch_size|num_generations|gradient_accumulation_steps|steps_per_generation|"
                      r"num_iterations|max_new_tokens)$")


def unusable_values(trainer: dict, where: str) -> list[str]:
    """One line per setting that cannot work, naming it."""
    lines = []
    for key, value in trainer.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and math.isnan(value):
            lines.append(f"{where}.{key}: NaN; expected a number")
        elif FINITE.search(key) and math.isinf(value):
            lines.append(f"{where}.{key}: {value}; expected a finite number")
        elif POSITIVE.search(key) and value <= 0:
            lines.append(f"{where}.{key}: {value:g}; expected at least 1")
    return lines
