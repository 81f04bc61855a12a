# nucleus — make help lists the targets.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TLA2TOOLS ?= $(wildcard /opt/tla/tla2tools.jar)
TRACES_PER_SPEC ?= 200
# nucleus itself (editable) with what its tests and linters need, as pyproject pins them; then
# the `nucleus` command as a launcher that starts `python -IS` (tools/launcher.py).
INSTALL = $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,lint]' \
	&& $(BIN)/python -m tools.launcher >/dev/null

.DEFAULT_GOAL := help
.PHONY: help setup init test test-fast verify traces record lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)

setup: $(BIN)/python ## install system packages (as root, Debian) and a virtualenv with nucleus and its test tools
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    libseccomp2 iproute2 python3-venv python3 gcc libc6-dev util-linux \
	    runc crun bubblewrap runsc containerd nftables iptables passt slirp4netns nix-bin postgresql >/dev/null; fi
	@$(MAKE) --no-print-directory init
	@$(INSTALL)
	@$(BIN)/python -m compileall -q nucleus >/dev/null  # bytecode, even where PYTHONDONTWRITEBYTECODE is set
	@echo "setup done: $(BIN)/nucleus"

INIT := nucleus/init/nucleus-init
# The container's init: freestanding (no libc, static, no relocation), a few KiB.
INIT_CFLAGS = -Os -Wall -Wextra -Werror -ffreestanding -fno-builtin -fno-stack-protector -fno-pie \
  -fno-asynchronous-unwind-tables -nostdlib -static -no-pie -s -Wl,--build-id=none -Wl,-z,noexecstack

KEEPER := nucleus/init/nucleus-keeper
# What a run's supervisor becomes once its container runs (nucleus.app.keeper): with libc, on the host.
KEEPER_CFLAGS = -Os -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE -pie -s \
  -Wl,-z,relro,-z,now,-z,noexecstack

init: $(INIT) $(KEEPER) ## build the container's compiled init and the supervisor's keeper (gcc)

$(KEEPER): nucleus/init/keeper.c
	$(CC) $(KEEPER_CFLAGS) -o $@ $<

$(INIT): nucleus/init/init.c
	$(CC) $(INIT_CFLAGS) $(if $(filter x86_64,$(shell uname -m)),-fcf-protection=none) -o $@ $<

test: ## run the whole test suite (kernel tests need root)
	$(BIN)/python -m pytest -q -ra

test-fast: ## only the pure tests (no kernel)
	$(BIN)/python -m pytest -q tests/unit tests/model tests/replay

verify: ## model-check every spec with the built-in checker (no Java), and Apalache (apalache-mc on PATH) or TLC (TLA2TOOLS=path/to/tla2tools.jar) where present
	@$(BIN)/python -m tools.tla verify --tla2tools "$(TLA2TOOLS)"

traces: ## regenerate traces/ from the specs with the model checker (TRACES_PER_SPEC=N)
	@$(BIN)/python -m tools.tla traces --tla2tools "$(TLA2TOOLS)" --count $(TRACES_PER_SPEC)

record: ## re-record traces/recorded/ from real runs (as root): the plan's intents, checked by replay
	@$(BIN)/python -m tools.record

lint: $(BIN)/python ## ruff and mypy --strict over the whole package (pinned in pyproject's lint extra)
	@$(BIN)/python -m ruff --version >/dev/null 2>&1 && $(BIN)/python -m mypy --version >/dev/null 2>&1 || $(INSTALL)
	$(BIN)/python -m ruff check nucleus tests tools benches
	$(BIN)/python -m mypy --strict nucleus

bench: ## benchmarks against the peers (see BENCHMARKS.md)
	@$(BIN)/python -m compileall -q nucleus >/dev/null  # a changed module's bytecode, as setup leaves it
	$(BIN)/python -m benches --install-peers $(if $(filter 1,$(BENCH_QUICK)),--quick) $(if $(BENCH_REPS),--reps $(BENCH_REPS))

clean: ## remove build and test leftovers
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
