# sam_lab: the two commands a learner needs are `make lab` and `make test`.
#
#   make venv    create .venv (if missing) and install sam_lab with its dev extra into it
#   make lab     open JupyterLab on lessons/ (http://127.0.0.1:8888)
#   make demos   serve the widget demos in widgets/ with Voila (http://127.0.0.1:8866)
#   make test    stripped-notebook check, unit tests, then every notebook run by nbval
#   make bench   run each benchmarks/*.py in turn
#   make clean   remove caches and build output (keeps .venv; `make distclean` removes it too)
#
# pip is re-run only when pyproject.toml is newer than the stamp $(VENV)/.installed; delete the
# stamp (or `make distclean`) to force a reinstall.

PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# folders whose notebooks are checked (nbstripout) and run (nbval); missing ones are skipped
NOTEBOOK_DIRS := lessons widgets
# the test run: headless matplotlib, stable hashing, the exercises' reference solutions filled in
# (sam_lab.exercises.turns). (Torch thread counts are set by the tests.)
TEST_ENV := MPLBACKEND=Agg PYTHONHASHSEED=0 SAM_LAB_SOLUTIONS=1
LAB_PORT ?= 8888
LAB_ARGS ?=
# Jupyter refuses to start as root unless told to (containers, CI)
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

.DEFAULT_GOAL := help
.PHONY: help venv lab demos test test-notebook-format test-unit test-notebooks bench clean distclean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

# ---------------------------------------------------------------------------------- environment
# pyvenv.cfg is a real file written once by `python -m venv` (bin/python is a symlink whose
# timestamp is the system interpreter's, so it makes a poor target).
$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(VENV)/pyvenv.cfg
	$(VENV_PYTHON) -m pip install -q -e ".[dev]"
	@touch $@

venv: $(STAMP)

# ---------------------------------------------------------------------------------- lessons
lab: venv
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=lessons --ip=127.0.0.1 --port=$(LAB_PORT) $(ALLOW_ROOT) $(LAB_ARGS)

# ---------------------------------------------------------------------------------- demos
# Voila starts one kernel per page view and runs the notebook in it. Culling shuts a kernel down
# once it has had no browser connected (its tab closed) and been idle for DEMOS_CULL_S seconds,
# checked every 30 s, so closed tabs give their memory back (about 1.2 GB for compare_encoders
# once ViT-B is built). A kernel with its tab still open is never culled (cull_connected=False).
DEMOS_PORT ?= 8866
DEMOS_CULL_S ?= 120
DEMOS_ARGS ?=
demos: venv
	$(VENV)/bin/voila --no-browser --Voila.ip=127.0.0.1 --port=$(DEMOS_PORT) \
	  --MappingKernelManager.cull_idle_timeout=$(DEMOS_CULL_S) --MappingKernelManager.cull_interval=30 \
	  --MappingKernelManager.cull_connected=False $(DEMOS_ARGS) widgets

# ---------------------------------------------------------------------------------- tests
test: test-notebook-format test-unit test-notebooks
# one step after the other, also under `make -j`
.NOTPARALLEL:

# Notebooks are committed without outputs. `--verify` exits non-zero for any notebook that
# nbstripout would change (outputs, execution counts, volatile metadata); `--keep-id` leaves
# cell ids alone, so notebooks written by JupyterLab or nbformat pass once their outputs are
# cleared. Fix a failure with `.venv/bin/nbstripout --keep-id path/to/notebook.ipynb`.
# The list is the notebooks git tracks (every *.ipynb when this is not a git checkout); with
# none, nothing is checked (nbstripout with no file would read standard input).
test-notebook-format: venv
	@notebooks=""; for nb in $$( { git ls-files -- $(foreach d,$(NOTEBOOK_DIRS),'$(d)/*.ipynb') 2>/dev/null \
	    || find $(NOTEBOOK_DIRS) -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null; } | sort -u ); do \
	  [ -f "$$nb" ] && notebooks="$$notebooks $$nb"; \
	done; \
	if [ -z "$$notebooks" ]; then \
	  echo "nbstripout: no notebooks under $(NOTEBOOK_DIRS); nothing to check"; \
	else \
	  echo "nbstripout --verify --keep-id:" $$notebooks; \
	  $(VENV_PYTHON) -m nbstripout --verify --keep-id $$notebooks; \
	fi

test-unit: venv
	$(TEST_ENV) $(VENV_PYTHON) -m pytest tests -q --durations=25

# Every notebook runs top to bottom in this environment's kernel; its assert cells are the
# checks (--nbval-lax: outputs are not compared). pytest exit code 5 (no tests collected)
# counts as success here only.
test-notebooks: venv
	@dirs=""; for d in $(NOTEBOOK_DIRS); do \
	  if [ -d "$$d" ] && [ -n "$$(find "$$d" -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | head -n 1)" ]; then \
	    dirs="$$dirs $$d"; \
	  else \
	    echo "nbval: no notebooks in $$d/; skipped"; \
	  fi; \
	done; \
	if [ -z "$$dirs" ]; then echo "nbval: no notebooks to run"; exit 0; fi; \
	echo "$(TEST_ENV) $(VENV_PYTHON) -m pytest --nbval-lax --nbval-current-env$$dirs -q -p no:cacheprovider"; \
	rc=0; $(TEST_ENV) $(VENV_PYTHON) -m pytest --nbval-lax --nbval-current-env $$dirs -q -p no:cacheprovider --durations=20 || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then echo "nbval: no notebook cells collected"; rc=0; fi; \
	exit $$rc

# ---------------------------------------------------------------------------------- benchmarks
bench: venv
	@found=0; for f in benchmarks/*.py; do \
	  [ -e "$$f" ] || continue; found=1; \
	  echo "== $$f"; \
	  $(VENV_PYTHON) "$$f" || exit $$?; \
	done; \
	if [ "$$found" -eq 0 ]; then echo "bench: no benchmarks/*.py yet"; fi

# ---------------------------------------------------------------------------------- cleaning
clean:
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print \
	  | xargs rm -rf
	rm -rf .pytest_cache .hypothesis build dist *.egg-info

distclean: clean
	rm -rf $(VENV)
