# ServiceGate. On a fresh machine `make demo` and `make test` do all of their own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test check bench docs translations screenshots debian-packages dist lock clean

# Debian packages the tests need; installed with apt-get when run as root.
DEBIAN_PACKAGES := $(shell grep -v '^\#' debian-packages.txt)

# The Debian packages come first: a fresh Debian's python3 needs python3-venv to make the venv.
$(STAMP): pyproject.toml | debian-packages
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[ui,portal,test,dev]'
	touch $(STAMP)

debian-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "Missing Debian packages (run as root, or install them): $$missing"; fi; \
	fi

demo: $(STAMP)
	$(PY) scripts/demo.py

check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The window-system tests (a real X server, the xcb platform) in a pytest run of their own, after the others
# (which use Qt's offscreen platform in-process).
test: $(STAMP) check
	$(VENV)/bin/pytest -m "not window_system"
	$(VENV)/bin/pytest -m window_system

bench: $(STAMP)
	$(PY) -m benchmarks

docs: $(STAMP)
	$(PY) -m agent.config --markdown > docs/configuration.md
	$(PY) -m anonymizer.docs --peers docs/peer-comparison.md > docs/deidentification.md

# The UI's German texts: every text marked in consent_ui/ into the .ts file (translations kept, gone ones dropped),
# then compiled into the .qm file the UI loads. Translate what lupdate marks unfinished, then run it again.
TS := consent_ui/translations/servicegate_de.ts
translations: $(STAMP)
	$(VENV)/bin/pyside6-lupdate -no-obsolete -locations none consent_ui/*.py -ts $(TS)
	$(VENV)/bin/pyside6-lrelease $(TS) -qm $(TS:.ts=.qm)

# Every screen of the consent UI in a real window (Xvfb), in English and German, into docs/screenshots/.
screenshots: $(STAMP)
	$(PY) scripts/screenshots.py

# The offline install bundle dist/servicegate-VERSION-linux-x86_64.tar.gz (scripts/dist.py says what is inside).
# The downloaded wheels are kept in build/wheelhouse, so a second build downloads nothing.
dist: $(STAMP)
	$(PY) scripts/dist.py

# The lock files, pinned with hashes: requirements/device.txt (the device's dependencies: the package's and the `ui`
# extra's) and requirements/build.txt (the wheel's build backend). pip-compile resolves for the interpreter it runs
# on, so it must be the device's: CPython 3.11 on Linux x86_64. Pins stay unless pyproject.toml asks otherwise;
# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest allowed release.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)
lock: $(STAMP)
	@$(PY) -c 'import platform, sys; sys.exit(0 if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11) and sys.platform == "linux" and platform.machine() == "x86_64" else "make lock resolves for the device: run it with CPython 3.11 on Linux x86_64")'
	$(PIP_COMPILE) --extra ui -o requirements/device.txt pyproject.toml
	$(PIP_COMPILE) --build-deps-for wheel --only-build-deps -o requirements/build.txt pyproject.toml

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
