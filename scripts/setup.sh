#!/usr/bin/env bash
# One-time set-up for a fresh machine: system packages, then .venv with symgym installed editable.
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_sys=()
command -v gfortran >/dev/null 2>&1 || need_sys+=(gfortran)           # escnn -> py3nj builds Fortran
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so' || need_sys+=(libusb-1.0-0)  # open3d loads libusb
# Optional: headless GL for 3-D videos (`symgym eval --video`); without it videos fall back to a top-down drawing.
want_sys=()
ldconfig -p 2>/dev/null | grep -q 'libEGL.so' || want_sys+=(libegl1 libgl1-mesa-dri)
ldconfig -p 2>/dev/null | grep -q 'libOSMesa.so' || want_sys+=(libosmesa6)
if [ ${#want_sys[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    need_sys+=("${want_sys[@]}")
elif [ ${#want_sys[@]} -gt 0 ]; then
    echo "setup: optional, for 3-D videos: sudo apt-get install -y ${want_sys[*]}" >&2
fi
if [ ${#need_sys[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing system packages: ${need_sys[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_sys[@]}" >/dev/null
    else
        echo "setup: missing system packages: ${need_sys[*]}" >&2
        echo "setup: run as root:  sudo apt-get update && sudo apt-get install -y ${need_sys[*]}" >&2
        exit 1
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.symgym-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing symgym and its dependencies into .venv (first time takes a few minutes)"
    .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
    # torch first, from the pinned CPU wheel, so nothing later resolves a CUDA build.
    .venv/bin/python -m pip install -q "torch==2.13.0"
    .venv/bin/python -m pip install -q -e ".[all,test,docs]"
    touch "$stamp"
fi
