"""VERL's own reward managers (naive, and batch for reward_manager=batch) calling posttrain's rewards/adapters.py
the way run_verl.sh sets it up: VERL's data sources score through VERL's default_compute_score, posttrain's through
posttrain's rewards. Needs VERL installed (it is not in posttrain's dependencies), so CI skips it."""

from __future__ import annotations

import pytest

pytest.importorskip("verl.workers.reward_manager.batch", reason="VERL is not installed (pip install verl)")


def test_verl_reward_managers_score_with_posttrains_entry_points(tiny_model):
    import numpy as np
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl import DataProto
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.batch import BatchRewardManager
    from verl.workers.reward_manager.naive import NaiveRewardManager

    from posttrain.rewards import adapters

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    texts = ["So it is 72.\n#### 72", "So it is 71.\n#### 71", "<think>t</think><answer>200</answer>",
             "<answer>9</answer>"]
    truths = ["72", "72", {"target": 200}, {"target": 200}]
    sources = ["openai/gsm8k", "openai/gsm8k", "sample_size_estimation_train", "sample_size_estimation_train"]
    prompt, length, pad = 4, 48, tokenizer.pad_token_id or 0
    responses = torch.full((4, length), pad)
    mask = torch.zeros((4, prompt + length), dtype=torch.long)
    mask[:, :prompt] = 1
    for i, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:length]
        responses[i, :len(ids)] = torch.tensor(ids)
        mask[i, prompt:prompt + len(ids)] = 1
    data = DataProto.from_dict(
        tensors={"prompts": torch.full((4, prompt), pad), "responses": responses, "attention_mask": mask},
        non_tensors={"data_source": np.array(sources, dtype=object),
                     "reward_model": np.array([{"ground_truth": t} for t in truths], dtype=object),
                     "extra_info": np.array([{} for _ in truths], dtype=object)})
    for name, manager_class in (("compute_score", NaiveRewardManager), ("compute_score_batch", BatchRewardManager)):
        config = OmegaConf.create({"reward": {"custom_reward_function": {
            "path": adapters.__file__, "name": name, "reward_kwargs": {}}}})
        manager = manager_class(tokenizer=tokenizer, num_examine=0, compute_score=get_custom_reward_fn(config))
        scores = manager(data, return_dict=True)["reward_tensor"].sum(-1).tolist()
        assert [round(s, 3) for s in scores] == [1.0, 0.0, 1.1, -2.0], name
