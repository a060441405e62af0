"""Generate for several waiting requests at once: the server's batching scheduler.

On a CPU or a GPU one forward pass over 16 sequences costs little more than
over one, so requests that wait together are answered together: the worker
takes every request at the front of the line that decodes the same way (the
same sampling settings; `max_tokens` may differ), left-pads their prompts and
runs one `model.generate` over them, streaming each row's tokens to its own
reader. A row ends on its own (end of turn, a stop string, its `max_tokens`,
its reader gone) and its reader hears at once; the batch ends when every row
has.

A request arriving while a batch runs joins it at the next step, when the
batch has a free row: the batch pauses, the newcomer's prompt is prefilled
into the batch's KV cache (the rows still answering keep theirs, left-padded
to the new width), and a new `generate` goes on with all of them. So a
finished or cancelled row frees its place for the next in line, the price
being the newcomer's own prefill. A model whose cache is not plain per-token
keys and values (sliding windows, linear attention) cannot be padded so; its
rows are resumed by prefilling them again, prompt and tokens so far. transformers' own
continuous batching (`generate_batch`) was measured for this and was ~3x
slower than one request after another on CPU (docs/benchmarks.md), so it is
not used.

Requests that decode differently (greedy, sampled at another temperature, a
seeded one, which runs alone) cannot share a `generate`, so they make batches
of their own, and the batches take turns: one that has made `TURN_TOKENS`
tokens and run `TURN_SECONDS` in its turn pauses (as it does for a newcomer)
when another waits, and a batch just started goes first. So a short request
behind long answers of other settings waits a turn or a few, not for all of
them to end (it waited for every one of them when batches ran one after the
other). A paused batch keeps its KV cache, and a seeded one its random state,
so a turn changes no answer.

Batching does not change an answer: under greedy decoding each row's tokens
are those it gets alone (left padding and the attention mask keep rows apart;
a test checks token for token). A sampled request with a seed is run alone,
so that its seed means what it does without a server.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from transformers import StoppingCriteria, StoppingCriteriaList

from posttrain.evaluation.generation import GenerationSettings

log = logging.getLogger("posttrain")

# A batch's turn when another waits: at least this many tokens (so a short answer ends in one turn) and seconds (each
# pause costs the start of a generate call, which a turn this long keeps small beside it)
TURN_TOKENS, TURN_SECONDS = 16, 0.1


@dataclass
class Request:
    """One answer being generated: its reader (`stream`, an `inference._Answering`), prompt and tokens so far."""

    stream: object
    prompt: list[int]
    config: object  # its GenerationConfig
    tokens: list[int] = field(default_factory=list)
    final: int | None = None  # how many tokens it has once its last one is streamed: known when it stops
    done: bool = False

    @property
    def settings(self) -> GenerationSettings:
        return self.stream.settings

    @property
    def remaining(self) -> int:
        return self.settings.max_new_tokens - len(self.tokens)

    def finish(self) -> None:
        """End the row and tell its reader. One that can no longer be told (its event loop closed, the client
        long gone) is just done: the other rows of its batch, and the next batch, go on."""
        self.done = True
        try:
            self.stream.end()
        except Exception:
            log.exception("a reader could not be told its answer ended")


def batch_key(settings: GenerationSettings):
    """Requests with equal keys decode the same way and may share a batch; None: this one runs alone."""
    if settings.sampling and settings.seed is not None:
        return None
    neutral = dict(max_new_tokens=1, batch_size=1)
    return dataclasses.replace(settings, **neutral, seed=None) if settings.sampling else "greedy"


class _RowsStreamer:
    """What `generate` calls `streamer`: hands each row's new token to that row's reader, and ends the row after
    its last one."""

    def __init__(self, rows: list[Request]):
        self.rows = rows
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate's first call is the (padded) prompts
            self.prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(-1).tolist()):
            if row.done or (row.final is not None and len(row.tokens) >= row.final):
                continue  # a finished row's padding
            row.tokens.append(token)
            row.stream.put(value.new_tensor([token]))
            if row.final is not None and len(row.tokens) >= row.final:
                row.finish()

    def end(self) -> None:
        pass  # rows are ended one by one, as each finishes


class _RowsDone(StoppingCriteria):
    """Stops each row when it is finished; all of them (paused, not finished) when newcomers can join.

    It reads the step's tokens from `input_ids`, not from what was streamed: transformers hands a token to the
    streamer after the stopping criteria (and on a GPU one step later still), so a row's count and last token are
    known here first. The row ends (its reader told) once its last token has been streamed."""

    def __init__(self, rows: list[Request], admit: Callable[[int, int], bool], width: int):
        self.rows = rows
        self.admit = admit
        self.width = width  # of input_ids when generate began
        self.before = [len(row.tokens) for row in rows]
        self.paused = False

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        made = input_ids.shape[1] - self.width
        for row, before, token in zip(self.rows, self.before, input_ids[:, -1].tolist()):
            if row.done or row.final is not None:
                continue
            count = before + made
            if (row.stream.cancelled.is_set() or count >= row.settings.max_new_tokens
                    or token in row.stream.eos_ids):
                row.final = count
                if len(row.tokens) >= count:
                    row.finish()
        live = sum(row.final is None for row in self.rows)
        if live and self.admit(live, made):
            self.paused = True
        stop = [self.paused or row.final is not None for row in self.rows]
        return torch.tensor(stop, dtype=torch.bool, device=input_ids.device)


class Batch:
    """The requests being answered together: their tokens so far as one left-padded tensor, and the KV cache of all
    but its last column, kept between pauses so that a newcomer costs its own prefill only. Models whose cache is
    not plain per-token keys and values (sliding windows, linear attention) are resumed by a prefill of every row.
    `key` is its rows' `batch_key`; its current turn began at `turn_started` and has made `turn_tokens` tokens."""

    def __init__(self, model, pad_id: int, key=None):
        self.model, self.pad_id, self.key = model, pad_id, key
        self.rows: list[Request] = []
        self.ids = self.mask = self.cache = None
        self.turn_tokens, self.turn_started = 0, time.monotonic()
        self.rng = None  # a seeded batch's random state when it paused: its sampling goes on from there

    def run(self, newcomers: list[Request], admit: Callable[[int, int], bool]) -> None:
        """Answer the rows and the newcomers until each is finished, or until `admit(live rows, tokens made in this
        run)` says to pause, for more to join or for another batch's turn (the rows not finished stay, to go on at
        the next run). A failure ends every row with the error."""
        import torch
        from transformers import set_seed

        for row in self.rows + newcomers:
            if not row.done and row.stream.cancelled.is_set():
                row.finish()
        self._keep([not row.done for row in self.rows])
        newcomers = [row for row in newcomers if not row.done]
        if not self.rows and not newcomers:
            return
        try:
            with torch.inference_mode():
                self._join(newcomers)
                config = copy.deepcopy(self.rows[0].config)
                config.max_new_tokens = max(row.remaining for row in self.rows)
                seeded = batch_key(self.rows[0].settings) is None
                if seeded and self.rng is None:
                    set_seed(self.rows[0].settings.seed)
                elif seeded:
                    _set_rng_state(self.rng, self.ids.device)
                done = _RowsDone(self.rows, admit, self.ids.shape[1])
                out = self.model.generate(input_ids=self.ids, attention_mask=self.mask, generation_config=config,
                                          streamer=_RowsStreamer(self.rows), return_dict_in_generate=True,
                                          stopping_criteria=StoppingCriteriaList([done]),
                                          **({_cache_name(self.model): self.cache} if self.cache is not None else {}))
        except Exception as e:  # every reader must hear of it, and the next request must still run
            self.fail(e)
            return
        for row in self.rows:
            if not row.done and (row.final is not None or not done.paused):
                row.finish()
        if not done.paused:
            self._keep([False] * len(self.rows))
            return
        added = out.sequences.shape[1] - self.ids.shape[1]
        self.turn_tokens += added
        if seeded:
            self.rng = _rng_state(self.ids.device)
        self.ids = out.sequences
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], added)], dim=1)
        cache = _returned_cache(out)
        self.cache = cache if _reusable(cache, self.ids.shape[1] - 1) else None
        self._keep([not row.done for row in self.rows])  # a finished row's place is free for the next in line

    def fail(self, error: BaseException, newcomers: list[Request] = ()) -> None:
        """End every row (and newcomers not yet in) with `error`, each reader told on its own (one whose event
        loop has closed cannot be)."""
        for row in self.rows + [row for row in newcomers if row not in self.rows]:
            if not row.done:
                row.stream.error = error
                row.finish()
        self._keep([False] * len(self.rows))

    def _keep(self, keep: list[bool]) -> None:
        """Drop the rows whose `keep` is False, from the tensors and the cache too."""
        import torch

        if all(keep):
            return
        self.rows = [row for row, k in zip(self.rows, keep) if k]
        if not self.rows:
            self.ids = self.mask = self.cache = None
            return
        index = torch.tensor([i for i, k in enumerate(keep) if k], device=self.ids.device)
        self.ids, self.mask = self.ids[index], self.mask[index]
        if self.cache is not None:
            self.cache.batch_select_indices(index)

    def _join(self, newcomers: list[Request]) -> None:
        """Put the newcomers in the batch: their prompts prefilled into the kept cache, or every row from scratch."""
        import torch
        from torch.nn.functional import pad

        device = next(self.model.parameters()).device
        if self.cache is None:  # build the whole batch; generate prefills it
            self.rows += newcomers
            self.ids, self.mask = _left_padded([row.prompt + row.tokens for row in self.rows], self.pad_id, device)
        elif newcomers:
            ids, mask = _left_padded([row.prompt + row.tokens for row in newcomers], self.pad_id, device)
            width = max(self.ids.shape[1], ids.shape[1])
            grow = width - self.ids.shape[1]  # columns the kept rows gain on the left
            ids = pad(ids, (width - ids.shape[1], 0), value=self.pad_id)
            mask = pad(mask, (width - mask.shape[1], 0))
            positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
            from transformers import DynamicCache

            prefill = self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                                 use_cache=True, **{_cache_name(self.model): DynamicCache(config=self.model.config)})
            for kept, new in zip(self.cache.layers, _returned_cache(prefill).layers):
                kept.keys = torch.cat([pad(kept.keys, (0, 0, grow, 0)), new.keys])
                kept.values = torch.cat([pad(kept.values, (0, 0, grow, 0)), new.values])
            self.ids = torch.cat([pad(self.ids, (grow, 0), value=self.pad_id), ids])
            self.mask = torch.cat([pad(self.mask, (grow, 0)), mask])
            self.rows += newcomers
        unused = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # columns every row pads
        if unused:
            self.ids, self.mask = self.ids[:, unused:], self.mask[:, unused:]
            if self.cache is not None:
                for layer in self.cache.layers:
                    layer.keys, layer.values = layer.keys[..., unused:, :], layer.values[..., unused:, :]


def _rng_state(device):
    """The random state sampling draws from: the CPU's, and the GPU's when the batch is on one."""
    import torch

    return torch.random.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(state, device) -> None:
    import torch

    torch.random.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _left_padded(sequences: list[list[int]], pad_id: int, device):
    import torch

    width = max(map(len, sequences))
    ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in sequences], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=device)
    return ids, mask


def _cache_name(model) -> str:
    """The keyword a model takes its KV cache by: `cache` in newer transformers, `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


def _returned_cache(output):
    """The KV cache a forward or `generate` returned, under either of its names."""
    return getattr(output, "cache", None) or getattr(output, "past_key_values", None)


def _reusable(cache, length: int) -> bool:
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return (isinstance(cache, DynamicCache) and bool(cache.layers)
            and all(type(layer) is DynamicLayer and layer.get_seq_length() == length for layer in cache.layers))
