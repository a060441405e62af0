"""posttrain/evaluation/vllm_generation.py: what vLLM is given, checked against the HF path on CPU.

vLLM needs a CUDA GPU, so here a stand-in `vllm` module takes its place: its
LLM runs the model it is handed with transformers, greedily or as the
SamplingParams say, on exactly the token ids it is given. The answers then
equal the HF backend's only if posttrain feeds vLLM the same prompt ids, stop
ids and length limit, and hands it the merged model where there is an adapter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from posttrain.data.sources import Source
from posttrain.errors import ConfigError
from posttrain.evaluation import GenerationSettings, evaluate
from posttrain.evaluation import vllm_generation
from tests.conftest import make_chats, write_jsonl


class FakeSamplingParams:
    def __init__(self, **options):
        self.__dict__.update(options)


class FakeLLM:
    made: list["FakeLLM"] = []

    def __init__(self, model, **options):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir, self.options = model, options
        self.files = sorted(p.name for p in Path(model).iterdir())
        self.network = AutoModelForCausalLM.from_pretrained(model).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.requests, self.shut_down = None, False
        self.llm_engine = SimpleNamespace(engine_core=SimpleNamespace(shutdown=self._shutdown))
        FakeLLM.made.append(self)

    def _shutdown(self):
        self.shut_down = True

    def generate(self, requests, params):
        import torch

        self.requests, self.params = requests, params
        outputs = []
        for request in requests:
            ids = torch.tensor([request["prompt_token_ids"]])
            with torch.inference_mode():
                generated = self.network.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                                  max_new_tokens=params.max_tokens, eos_token_id=params.stop_token_ids,
                                                  pad_token_id=self.tokenizer.pad_token_id, num_beams=1,
                                                  repetition_penalty=1.0)
            text = self.tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=params.skip_special_tokens)
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(text=text)]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(vllm_generation, "available", lambda: True)
    FakeLLM.made = []
    return FakeLLM


@pytest.fixture
def chats(tmp_path):
    return write_jsonl(tmp_path / "chats.jsonl", make_chats(5, seed=3))


def _outputs(path: Path) -> list[str]:
    return [json.loads(line)["output"] for line in path.read_text().splitlines()]


def test_vllm_answers_equal_the_hf_answers_and_the_metrics_say_which_backend(fake_vllm, talkative_model, chats,
                                                                            tmp_path):
    settings = GenerationSettings(max_new_tokens=7, batch_size=2)
    hf = evaluate(str(talkative_model), [Source(str(chats))], "rouge", tmp_path / "hf", settings=settings,
                  progress=False, backend="hf")
    via_vllm = evaluate(str(talkative_model), [Source(str(chats))], "rouge", tmp_path / "vllm", settings=settings,
                        progress=False, backend="vllm")
    assert _outputs(tmp_path / "vllm" / "predictions.jsonl") == _outputs(tmp_path / "hf" / "predictions.jsonl")
    assert len(set(_outputs(tmp_path / "hf" / "predictions.jsonl"))) > 1  # the answers differ: the test can fail
    assert (hf.metrics["backend"], via_vllm.metrics["backend"]) == ("hf", "vllm")
    llm = fake_vllm.made[-1]
    assert llm.model_dir == str(talkative_model)
    assert (llm.params.temperature, llm.params.max_tokens, llm.params.top_k) == (0.0, 7, -1)
    assert llm.params.stop_token_ids and len(llm.requests) == 5
    assert llm.shut_down  # the GPU is free for the next model of an eval stage
    assert via_vllm.metrics["generation_seconds"] >= 0


def test_an_adapter_is_merged_for_vllm_into_a_folder_removed_afterwards(fake_vllm, talkative_model, lora_adapter,
                                                                       chats, tmp_path):
    settings = GenerationSettings(max_new_tokens=7)
    evaluate(str(talkative_model), [Source(str(chats))], "rouge", tmp_path / "hf", settings=settings,
             adapter=str(lora_adapter), progress=False, backend="hf")
    evaluate(str(lora_adapter), [Source(str(chats))], "rouge", tmp_path / "vllm", settings=settings,
             progress=False, backend="vllm")
    assert _outputs(tmp_path / "vllm" / "predictions.jsonl") == _outputs(tmp_path / "hf" / "predictions.jsonl")
    llm = fake_vllm.made[-1]
    assert "adapter_config.json" not in llm.files and "model.safetensors" in llm.files
    assert not Path(llm.model_dir).exists()


def test_sampling_settings_reach_vllm(fake_vllm):
    params = vllm_generation.sampling_params(GenerationSettings(max_new_tokens=9, temperature=0.7, top_p=0.9,
                                                                seed=5), [2])
    assert (params.temperature, params.top_p, params.seed, params.max_tokens, params.stop_token_ids) == (
        0.7, 0.9, 5, 9, [2])


def test_asking_for_vllm_where_it_cannot_run_is_a_clear_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(vllm_generation, "available", lambda: False)
    with pytest.raises(ConfigError, match="backend vllm needs vLLM installed .* and a CUDA GPU"):
        vllm_generation.use_vllm("vllm")
    assert vllm_generation.use_vllm("auto") is False and vllm_generation.use_vllm("hf") is False
    with pytest.raises(ConfigError, match="backend: expected one of auto, hf, vllm"):
        vllm_generation.use_vllm("tgi")
    monkeypatch.setattr(vllm_generation, "available", lambda: True)
    assert vllm_generation.use_vllm("auto") is True and vllm_generation.use_vllm("hf") is False
