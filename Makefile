# Two entry points: `make demo` (the main job on built-in data) and `make test`. Each sets up what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench bench-quick setup data clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

data:
	@if [ ! -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's dataset-fashion-mnist into $(FMNIST)"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    ($$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	     ($$SUDO apt-get update -qq >/dev/null && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null)) || \
	    { echo "could not install dataset-fashion-mnist with apt-get; install it, or pass --data.path=DIR holding the Fashion-MNIST idx .gz files"; exit 1; }; \
	  else \
	    echo "Fashion-MNIST is missing at $(FMNIST) and apt-get is not available: install Debian's package dataset-fashion-mnist, or pass --data.path=DIR holding the idx .gz files"; exit 1; \
	  fi; \
	fi

demo: setup data
	$(BIN)/learnability demo

# HYPOTHESIS_PROFILE=ci: the property tests draw a fixed example sequence (tests/conftest.py), never flaky.
# --durations: each part names its slowest tests, so the 15-minute budget's drift shows in every CI log.
# -n 2 (pytest-xdist): the fast tests in two processes (5 min 20 s -> 3 min 13 s on 2 cores); the slow
# and Ray parts stay serial: they time deadlines (Ctrl-C within 10 s) and start Ray clusters.
test: setup data
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q -n 2 --durations=5 -m "not slow and not ray"
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q --durations=5 -m slow
	$(BIN)/python -m pytest -q --durations=5 -m ray

test-fast: setup
	$(BIN)/python -m pytest -q

bench-quick: setup data
	$(BIN)/python bench/classact.py --quick

bench: setup data
	$(BIN)/python bench/classact.py

clean:
	rm -rf $(VENV) runs
