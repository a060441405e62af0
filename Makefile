# `make demo` and `make test` each set up everything on a fresh machine:
# a virtual environment in .venv, posttrain installed into it (editable), torch
# pinned by constraints-cpu.txt so a CPU-only machine does not fetch CUDA builds.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.posttrain-installed
# Set TORCH_CONSTRAINTS= (empty) on a GPU machine to let pip pick a CUDA build of torch.
TORCH_CONSTRAINTS ?= -c constraints-cpu.txt
PYTEST_WORKERS ?= 2
DEMO_MODEL := models/quickstart-base

.PHONY: install test demo preference clinical medical judge pointwise-judge agent-judge bench bench-gpu clean

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests

$(DEMO_MODEL)/config.json: | $(STAMP)
	$(BIN)/posttrain init-model $(DEMO_MODEL) --size small \
		--corpus examples/data/glossary_alpaca.json --corpus examples/data/quickstart/sft.jsonl

demo: $(STAMP) $(DEMO_MODEL)/config.json
	$(BIN)/posttrain validate recipes/quickstart.yaml
	$(BIN)/posttrain run recipes/quickstart.yaml
	$(BIN)/posttrain status runs/quickstart

preference: $(STAMP) $(DEMO_MODEL)/config.json
	$(BIN)/posttrain validate recipes/preference/pipeline.yaml
	$(BIN)/posttrain run recipes/preference/pipeline.yaml
	$(BIN)/posttrain status runs/preference

CLINICAL_DATA := examples/data/clinical_trials
CLINICAL_MODEL := models/clinical-trials-base

$(CLINICAL_MODEL)/config.json: | $(STAMP)
	$(BIN)/posttrain init-model $(CLINICAL_MODEL) --size small --corpus $(CLINICAL_DATA)/stage_1.json \
		--corpus $(CLINICAL_DATA)/sample_size_train.jsonl --corpus $(CLINICAL_DATA)/study_search_train.jsonl

clinical: $(STAMP) $(CLINICAL_MODEL)/config.json
	$(BIN)/posttrain validate recipes/clinical_trials/pipeline.yaml
	$(BIN)/posttrain run recipes/clinical_trials/pipeline.yaml
	$(BIN)/posttrain status runs/clinical-trials

MEDICAL_DATA := examples/data/medical_dialogue
MEDICAL_MODEL := models/medical-dialogue-base

$(MEDICAL_MODEL)/config.json: | $(STAMP)
	$(BIN)/posttrain init-model $(MEDICAL_MODEL) --size small --corpus $(MEDICAL_DATA)/flashcards.jsonl \
		--corpus $(MEDICAL_DATA)/chatdoctor.jsonl

medical: $(STAMP) $(MEDICAL_MODEL)/config.json
	$(BIN)/posttrain validate recipes/medical_dialogue/pipeline.yaml
	$(BIN)/posttrain run recipes/medical_dialogue/pipeline.yaml
	$(BIN)/posttrain status runs/medical-dialogue

JUDGE_DATA := examples/data/judges
JUDGE_MODEL := models/judge-base

# the tokenizer learns the judge's training text only, never the held-out pairs
$(JUDGE_MODEL)/config.json: | $(STAMP)
	$(BIN)/posttrain init-model $(JUDGE_MODEL) --size small --corpus $(JUDGE_DATA)/pairwise_sft.jsonl \
		--corpus $(JUDGE_DATA)/pairwise_train.jsonl

judge: $(STAMP) $(JUDGE_MODEL)/config.json
	$(BIN)/posttrain validate recipes/reward_models/pairwise_judge_cpu.yaml
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/posttrain run recipes/reward_models/pairwise_judge_cpu.yaml
	$(BIN)/posttrain status runs/pairwise-judge-cpu

POINTWISE_MODEL := models/pointwise-judge-base

$(POINTWISE_MODEL)/config.json: | $(STAMP)
	$(BIN)/posttrain init-model $(POINTWISE_MODEL) --size small --corpus $(JUDGE_DATA)/pointwise_sft.jsonl \
		--corpus $(JUDGE_DATA)/pointwise_train.jsonl

pointwise-judge: $(STAMP) $(POINTWISE_MODEL)/config.json
	$(BIN)/posttrain validate recipes/reward_models/pointwise_judge_cpu.yaml
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/posttrain run recipes/reward_models/pointwise_judge_cpu.yaml
	$(BIN)/posttrain status runs/pointwise-judge-cpu

AGENT_JUDGE_MODEL := models/agent-judge-base

# the tokenizer learns the training steps only, never the held-out ones
$(AGENT_JUDGE_MODEL)/config.json: | $(STAMP)
	$(BIN)/posttrain init-model $(AGENT_JUDGE_MODEL) --size small --corpus $(JUDGE_DATA)/agent_judge_train.jsonl

agent-judge: $(STAMP) $(AGENT_JUDGE_MODEL)/config.json
	$(BIN)/posttrain validate recipes/agent_judge/agent_judge_cpu.yaml
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/posttrain run recipes/agent_judge/agent_judge_cpu.yaml
	$(BIN)/posttrain status runs/agent-judge-cpu

# Each bench exits 1 when it misses its target; all of them run, and make fails at the end if any missed.
bench: $(STAMP)
	@status=0; for script in sft_throughput rewards_throughput grpo_step_time dpo_step_time convert_throughput \
		serve_throughput hostile_input; do echo "$(BIN)/python bench/$$script.py"; $(BIN)/python bench/$$script.py || status=1; \
		done; exit $$status

# On a CUDA machine (install with TORCH_CONSTRAINTS= and the [gpu] extra): SFT tokens/s, MFU and peak memory of a
# 0.5 B model for each GPU option, and vLLM against transformers' generate for rollouts.
bench-gpu: $(STAMP)
	$(BIN)/python bench/gpu_figures.py

clean:
	rm -rf runs/quickstart $(DEMO_MODEL) runs/preference runs/clinical-trials $(CLINICAL_MODEL) runs/medical-dialogue $(MEDICAL_MODEL) \
		runs/pairwise-judge-cpu $(JUDGE_MODEL) runs/pointwise-judge-cpu $(POINTWISE_MODEL) \
		runs/agent-judge-cpu $(AGENT_JUDGE_MODEL)
