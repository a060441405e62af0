"""Optimizers a stage asks for that TRL's config classes cannot name: LoRA+ (`lora.plus_lr_ratio`) and Muon
(`optimizer: muon`).

LoRA+ trains each adapter's B matrix at `plus_lr_ratio` times the learning
rate of its A matrix, which the paper finds both faster and better. peft
builds that optimizer (`peft.optimizers.create_loraplus_optimizer`); it is
the optimizer the trainer would have made otherwise (the class, betas, eps
and weight decay of `trainer:`'s `optim`), with the B matrices in their own
parameter group. Setting it on the trainer before `train()` is the hook
transformers offers: `Trainer.create_optimizer` keeps an optimizer already
set, and the learning-rate schedule is built on it as usual.

Muon (torch.optim.Muon) orthogonalises the update of each weight matrix; it
takes 2-D parameters only, so, as in LLaMA-Factory's `use_muon` and the
Moonlight paper, the hidden layers' matrices go to Muon (with its learning
rate scaled to match AdamW's update size, torch's `match_rms_adamw`) and the
embeddings, the head, norms and biases to AdamW with `trainer:`'s betas and
eps. The two are one optimizer to the Trainer (MuonWithAdamW): one set of
parameter groups the schedule steps, one state dict a checkpoint keeps.
"""

from __future__ import annotations

import torch


def install(trainer, stage) -> None:
    """Put the stage's LoRA+ optimizer on `trainer` (after its model is wrapped, before training); nothing when the
    stage does not ask for one."""
    if getattr(stage, "optimizer", None) == "muon":
        trainer.optimizer = muon(trainer.model, trainer.args)
        return
    lora = getattr(stage, "lora", None)  # the config's validator has checked it goes with the stage
    if lora is None or lora.plus_lr_ratio is None:
        return
    from peft.optimizers import create_loraplus_optimizer
    from transformers import Trainer

    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    kwargs = {key: value for key, value in kwargs.items() if key != "lr"}
    if lora.plus_lr_embedding is not None:
        kwargs["loraplus_lr_embedding"] = lora.plus_lr_embedding
    trainer.optimizer = create_loraplus_optimizer(trainer.model, optimizer_cls, lr=trainer.args.learning_rate,
                                                  loraplus_lr_ratio=lora.plus_lr_ratio,
                                                  loraplus_weight_decay=trainer.args.weight_decay, **kwargs)


class MuonWithAdamW(torch.optim.Optimizer):
    """torch's Muon for some parameters and AdamW for the rest, as one optimizer: the param groups are the two
    optimizers' own (so the schedule's learning rates reach them), and the state dict holds both states."""

    def __init__(self, inner: list[torch.optim.Optimizer]):
        self.inner = inner
        super().__init__([group for optimizer in inner for group in optimizer.param_groups], {})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.inner:
            optimizer.step()
        return loss

    def state_dict(self):
        return {"inner": [optimizer.state_dict() for optimizer in self.inner]}

    def load_state_dict(self, state_dict):
        for optimizer, state in zip(self.inner, state_dict["inner"]):
            optimizer.load_state_dict(state)
        self.param_groups = [group for optimizer in self.inner for group in optimizer.param_groups]


def muon(model, args) -> MuonWithAdamW:
    """Muon for the trainable 2-D weights of the hidden layers, AdamW for the rest (LLaMA-Factory's split)."""
    matrices, others = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            hidden = param.ndim == 2 and "embed" not in name and "lm_head" not in name
            (matrices if hidden else others).append(param)
    inner = [torch.optim.Muon(matrices, lr=args.learning_rate, weight_decay=args.weight_decay,
                              adjust_lr_fn="match_rms_adamw")] if matrices else []
    if others:
        inner.append(torch.optim.AdamW(others, lr=args.learning_rate, weight_decay=args.weight_decay,
                                       betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon))
    return MuonWithAdamW(inner)
