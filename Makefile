.PHONY: demo test test-slow setup clean
VENV := .venv/bin

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/symgym demo --force  # a second `make demo` moves the previous runs/demo aside (never deletes it)

test: setup
	$(VENV)/python -m pytest

test-slow: setup
	$(VENV)/python -m pytest -m slow

clean:
	rm -rf .venv build *.egg-info
