"""posttrain/export/verify.py: a faithful export passes, one changed tensor, a NaN or a left-out adapter fails
with the largest difference printed; prompts come built in, from a .txt or from a data file."""

from __future__ import annotations

import shutil

import pytest

from posttrain.errors import PosttrainError
from posttrain.export import export
from posttrain.export.verify import DEFAULT_PROMPTS, TOLERANCE, VerifyError, VerifyResult, read_prompts, verify
from tests.conftest import make_chats, write_jsonl
from tests.export.test_export import make_adapter


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_adapter(tiny_model, tmp_path_factory.mktemp("verify-adapter") / "lora", seed=5)


@pytest.fixture(scope="module")
def exported(tiny_model, adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("verify-export") / "merged"
    export(str(tiny_model), str(adapter), out=out)
    return out


def _changed(exported, tmp_path, change):
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "changed"
    shutil.copytree(exported, copy)
    tensors = load_file(str(copy / "model.safetensors"))
    change(tensors["model.layers.1.mlp.down_proj.weight"])
    save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    return copy


def test_a_faithful_export_passes_and_the_adapter_effect_dwarfs_the_tolerance(exported, tiny_model, adapter):
    result = verify(exported, str(tiny_model), str(adapter))
    assert result.passed and result.dtype == "fp32" and result.prompts == len(DEFAULT_PROMPTS)
    assert result.max_abs_diff < result.tolerance == pytest.approx(TOLERANCE["fp32"] * result.scale)
    assert result.adapter_effect > 100 * result.tolerance and result.top1_agreement == 1.0
    assert "cannot tell" not in result.summary()


def test_one_changed_tensor_fails_with_the_largest_difference_printed(exported, tiny_model, adapter, tmp_path):
    changed = _changed(exported, tmp_path, lambda weight: weight.add_(0.05))
    with pytest.raises(VerifyError) as caught:
        verify(changed, str(tiny_model), str(adapter))
    result = caught.value.result
    assert not result.passed and result.max_abs_diff > result.tolerance
    assert (f"verify failed: largest |logit difference| {result.max_abs_diff:.3g}, tolerance {result.tolerance:.3g}"
            in str(caught.value))
    assert caught.value.exit_code == 3


def test_a_nan_weight_counts_as_an_infinite_difference(exported, tiny_model, adapter, tmp_path):
    changed = _changed(exported, tmp_path, lambda weight: weight.view(-1)[0:1].fill_(float("nan")))
    with pytest.raises(VerifyError, match=r"largest \|logit difference\| inf"):
        verify(changed, str(tiny_model), str(adapter))


def test_an_export_without_the_adapter_fails(tiny_model, adapter, tmp_path):
    export(str(tiny_model), out=tmp_path / "base-only")
    with pytest.raises(VerifyError) as caught:
        verify(tmp_path / "base-only", str(tiny_model), str(adapter))
    assert caught.value.result.max_abs_diff == pytest.approx(caught.value.result.adapter_effect, rel=1e-3)


def test_the_summary_says_when_the_tolerance_hides_the_adapter():
    result = VerifyResult(max_abs_diff=0.1, tolerance=0.8, scale=3.2, dtype="bf16", prompts=3, positions=150,
                          top1_agreement=1.0, adapter_effect=0.45)
    assert result.passed and "cannot tell a merged adapter from a missing one" in result.summary()
    assert result.as_dict()["passed"] is True and result.as_dict()["adapter_effect"] == 0.45


def test_prompts_built_in_from_text_or_from_data(tmp_path):
    assert read_prompts(None) == DEFAULT_PROMPTS
    text = tmp_path / "prompts.txt"
    text.write_text("first question\n\n" + "".join(f"q{i}\n" for i in range(10)))
    prompts = read_prompts(str(text))
    assert len(prompts) == 8 and prompts[0] == [{"role": "user", "content": "first question"}]
    chats = make_chats(2)
    data = write_jsonl(tmp_path / "chats.jsonl", chats)
    assert read_prompts(str(data)) == [chat["messages"][:1] for chat in chats]  # cut before the answer
    with pytest.raises(PosttrainError, match="no such prompts file"):
        read_prompts(str(tmp_path / "absent.txt"))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(PosttrainError, match="no prompts"):
        read_prompts(str(tmp_path / "empty.txt"))
