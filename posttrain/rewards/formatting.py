"""Answer extraction and the generic rewards: answer tags, exact match, numeric match.

Every task reward first finds the answer the same way the seed systems do:
drop anything before the assistant turn marker, then take the last
`<answer>...</answer>` (dot matches newline), stripped.
"""

from __future__ import annotations

import math
import re

from posttrain.rewards.registry import register

UNSIGNED = re.compile(r"\d+(?:\.\d+)?")  # the seed's sample-size pattern: a minus sign is not read
SIGNED = re.compile(r"-?\d+(?:\.\d+)?")
# Where an echoed prompt ends and the response begins, in the templates models are trained with.
ASSISTANT_MARKERS = ("<|im_start|>assistant", "<|start_header_id|>assistant<|end_header_id|>", "Assistant:")


def response_part(text: str) -> str:
    cut = max((text.rfind(marker) + len(marker) if marker in text else -1) for marker in ASSISTANT_MARKERS)
    return text[cut:] if cut >= 0 else text


def tag_contents(text: str, tag: str, ignore_case: bool = False) -> list[str]:
    """What `re.findall(r"<tag>(.*?)</tag>", text, re.DOTALL)` finds, in time linear in the text: the regex
    retries every unclosed opening tag to the end, so 10,000 `<answer>` took 12 s and 20,000 took 51 s."""
    flags = re.IGNORECASE if ignore_case else 0
    opens = [(m.start(), m.end()) for m in re.finditer(re.escape(f"<{tag}>"), text, flags)]
    closes = [(m.start(), m.end()) for m in re.finditer(re.escape(f"</{tag}>"), text, flags)]
    found, c, resume = [], 0, 0
    for start, inner in opens:
        if start < resume:  # inside the last match
            continue
        while c < len(closes) and closes[c][0] < inner:
            c += 1
        if c == len(closes):  # no closing tag after this one, so none after any later opening tag either
            break
        found.append(text[inner:closes[c][0]])
        resume = closes[c][1]
    return found


def extract_answer(text) -> str | None:
    if not isinstance(text, str):
        return None
    matches = tag_contents(response_part(text), "answer")
    return matches[-1].strip() if matches else None


def parse_number(text: str | None, *, signed: bool = False) -> float | None:
    """The first number in `text` once commas and spaces are removed (as the seed's sample-size reward reads it)."""
    if text is None:
        return None
    match = (SIGNED if signed else UNSIGNED).search(text.replace(",", "").replace(" ", ""))
    if match is None:
        return None
    value = float(match.group())
    return value if math.isfinite(value) else None


def target_value(ground_truth, *keys: str):
    """The reference answer: the value itself, or the first of `keys` in a dict."""
    if isinstance(ground_truth, dict):
        return next((ground_truth[k] for k in keys if k in ground_truth), None)
    return ground_truth


def _normalise(text) -> str:
    return " ".join(str(text).split()).casefold()


@register("answer_tags")
def answer_tags(solution_str, ground_truth=None, extra_info=None) -> float:
    """1.0 when the response holds exactly one non-empty <answer>...</answer>, else 0.0 (format only)."""
    if not isinstance(solution_str, str):
        return 0.0
    matches = tag_contents(response_part(solution_str), "answer")
    return 1.0 if len(matches) == 1 and matches[0].strip() else 0.0


@register("exact_match")
def exact_match(solution_str, ground_truth, extra_info=None) -> float:
    """1.0 when the answer (inside <answer> tags, or the whole response) equals the reference, ignoring case and spacing."""
    if not isinstance(solution_str, str):
        return 0.0
    reference = target_value(ground_truth, "answer", "target")
    if reference is None:
        return 0.0
    answer = extract_answer(solution_str)
    answer = answer if answer is not None else response_part(solution_str)
    return 1.0 if _normalise(answer) == _normalise(reference) else 0.0


@register("numeric_match")
def numeric_match(solution_str, ground_truth, extra_info=None) -> float:
    """1.0 when the answer's number is within a relative tolerance (`rtol`, default 0.01) of the target."""
    try:  # a target too large for a float (10**400) scores like a wrong answer
        target = float(target_value(ground_truth, "target", "answer"))
        rtol = float(_setting(extra_info, "rtol", _setting(ground_truth, "rtol", 0.01)))
    except (TypeError, ValueError, OverflowError):
        return 0.0
    answer = extract_answer(solution_str)
    text = answer if answer is not None else solution_str if isinstance(solution_str, str) else None
    prediction = parse_number(text, signed=True)
    if prediction is None or not math.isfinite(target):
        return 0.0
    return 1.0 if abs(prediction - target) <= abs(rtol) * abs(target) else 0.0


def _setting(mapping, key: str, default):
    return mapping.get(key, default) if isinstance(mapping, dict) else default
