"""Secrets come from the environment, and none is written into a run directory.

A key that names a secret (hub_token, api_key, wandb_secret) is redacted in
what posttrain writes (config.yaml, the manifest, reports). The trainer's
arguments need a second guard: transformers pickles them whole into
`training_args.bin` beside every saved model and checkpoint, the directory
users copy and upload. `pickled_without_secrets` makes the arguments leave
their secret fields out whenever they are pickled, while the running trainer
keeps them (push_to_hub still needs hub_token). Resume does not read the
saved arguments, so it is unaffected.
"""

from __future__ import annotations

import copy
import copyreg
import re

# a key that names a secret, not a count of tokens (max_new_tokens) nor a tokenizer's special token (pad_token)
_SECRET = re.compile(r"(^|_)(token|secret|password|passwd|api_?key|access_key)($|_)", re.IGNORECASE)
_NOT_SECRET = re.compile(r"((^|_)(pad|eos|bos|unk|sep|cls|mask)_token|_token_ids?)$", re.IGNORECASE)


def is_secret(key: str) -> bool:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).replace("-", "_").lower()  # hubToken, auth-token too
    return bool(_SECRET.search(words)) and not _NOT_SECRET.search(words)


def redact(value, mark="<redacted>"):
    """`value` with every set secret under a secret-naming key replaced by `mark`, in dicts and lists at any depth."""
    if isinstance(value, dict):
        return {k: mark if is_secret(str(k)) and v else redact(v, mark) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, mark) for v in value]
    return value


_REDACTING: dict[type, type] = {}


def pickled_without_secrets(args):
    """`args` (a dataclass such as TrainingArguments), changed in place so that a pickle of it (torch.save, as
    transformers saves training_args.bin) holds None for each secret field; it still unpickles as its own class.
    Copies keep the secrets: copy and deepcopy do not go through the pickled form."""
    cls = type(args)
    if cls in _REDACTING.values():
        return args
    if cls not in _REDACTING:
        _REDACTING[cls] = type(cls.__name__, (cls,), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__reduce_ex__": _reduce_without_secrets, "__copy__": _copy, "__deepcopy__": _deepcopy})
    args.__class__ = _REDACTING[cls]
    return args


def _reduce_without_secrets(self, protocol):
    state = {k: None if is_secret(k) else redact(v, None) for k, v in vars(self).items()}
    # what pickle's protocols 0 and 1 write for any object; __newobj__ would insist on the redacting class
    return copyreg._reconstructor, (type(self).__mro__[1], object, None), state


def _copy(self):
    new = object.__new__(type(self))
    vars(new).update(vars(self))
    return new


def _deepcopy(self, memo):
    new = object.__new__(type(self))
    memo[id(self)] = new
    vars(new).update(copy.deepcopy(vars(self), memo))
    return new
