PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo lint bench bench-all clean fuzz

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,examples,mpi]"
	touch $(STAMP)

test: install
	$(PY) -m pytest tests

N ?= 20000
JOBS ?= 1
# make fuzz N=20000 [SEED=S] [JOBS=J: graph-fuzz child campaigns in parallel] [KINDS=graph,export: crafted files]
fuzz: install
	nice $(PY) tests/fuzz/graph_fuzz.py --cases $(N) --jobs $(JOBS) $(if $(SEED),--seed $(SEED))
	nice $(PY) tests/fuzz/crafted_fuzz.py --cases $(N) $(if $(SEED),--seed $(SEED)) $(if $(KINDS),--kinds $(KINDS))

demo: install
	$(PY) examples/mlp_digits.py

lint: install
	$(VENV)/bin/ruff check graphc tests examples bench

# W1-W5 in one table (graphc, numpy, numpy 1 BLAS thread, JAX, PyTorch); BENCH_PY may name a Python
# with the `bench` extra (JAX, PyTorch) installed, e.g. make bench BENCH_PY=/path/to/venv/bin/python
BENCH_PY ?= $(PY)
bench: install
	$(BENCH_PY) bench/run_all.py

bench-all: install
	@for f in bench/bench_*.py; do echo "== $$f"; $(BENCH_PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
