.PHONY: demo test test-slow setup clean
VENV := .venv/bin

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/symgym demo

test: setup
	$(VENV)/python -m pytest

test-slow: setup
	$(VENV)/python -m pytest -m slow

clean:
	rm -rf .venv build *.egg-info
