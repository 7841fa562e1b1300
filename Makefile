# The two commands of the README: `make book` and `make test`. Each creates or updates .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= default
DATASET ?= shapes
# chapters executed at once, each in its own process on one CPU thread (use 1 on one GPU)
JOBS ?= 2
export OMP_NUM_THREADS := 1

.PHONY: venv book run vendor build-book check-html test clean

# (Re)install only when requirements.txt or pyproject.toml changed (content hash in a stamp).
# One pip command, so that the pinned torch==2.13.0 is resolved together with everything else.
venv:
	@want="$$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"; \
	if [ -x $(PY) ] && [ "$$(cat $(VENV)/.requirements.sha256 2>/dev/null)" = "$$want" ]; then \
	  echo "$(VENV) is up to date"; \
	else \
	  [ -x $(PY) ] || $(PYTHON) -m venv $(VENV); \
	  $(PY) -m pip install -r requirements.txt -e . && \
	  echo "$$want" > $(VENV)/.requirements.sha256; \
	fi

# The published book always executes what it publishes (committed results are a reference copy).
book: venv
	$(PY) -m xmrlib.reproduce run --profile $(PROFILE) --dataset $(DATASET) --force --jobs $(JOBS)
	$(MAKE) build-book
	@echo "The book is at _build/html/index.html (open it in a browser; no network needed)."

vendor:
	bash scripts/vendor_js.sh

# Strict build of what `run` executed for PROFILE/DATASET (zero warnings).
build-book: vendor
	$(PY) -m xmrlib.reproduce book --profile $(PROFILE) --dataset $(DATASET)
	$(VENV)/bin/jupyter-book build . --toc build/book/_toc.yml -W -n --keep-going

check-html: venv
	$(PY) scripts/check_html.py --html _build/html --shots build/screenshots

# pytest's exit code 5 (no tests collected) counts as success.
test: venv
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

clean:
	rm -rf _build build vendor
