# Everyday commands. `make run` serves the demo, `make test` runs the test suite; both set up .venv first
# and reinstall the requirements only when a lock file has changed since the last install.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
SCHEMA_FILE ?= /dev/null
# The settings refuse to start without ENVIRONMENT (development, test or production). `make run` always serves the
# development demo and `make test` always runs with test; the other targets use the ENVIRONMENT you exported, or
# development when there is none (`make migrate ENVIRONMENT=production` with the production settings exported).
ENVIRONMENT ?= development
# The lock files pin every package, transitive ones included, with their hashes: pip refuses anything else.
# `make lock` makes them from requirements.txt and requirements-dev.txt with pip-tools, in a throwaway venv.
PIP_TOOLS := pip-tools==7.6.2
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

.DEFAULT_GOAL := help

.PHONY: help install install-dev browser pgbouncer run test lint format audit lock migrate demo-data worker beat schema messages \
	clean distclean

help:
	@echo "make run        set up .venv, migrate, load demo data, serve http://$(HOST):$(PORT) (ENVIRONMENT=development)"
	@echo "make test       set up .venv with the dev tools and run pytest (ENVIRONMENT=test; PYTEST_ARGS=... to pass options)"
	@echo "make browser    install Debian's chromium and chromium-driver with apt when missing (the browser tests)"
	@echo "make pgbouncer  install Debian's pgbouncer with apt when missing (the tests through a pooler, tests/pooling)"
	@echo "make lint       ruff check . and ruff format --check . (make format rewrites the files)"
	@echo "make audit      pip-audit the locked dependencies (says so when the advisory database is out of reach)"
	@echo "make lock       pin requirements*.txt with every transitive dependency and its hashes into *.lock"
	@echo "make migrate    apply migrations"
	@echo "make demo-data  load (or refresh) the demo data set and print the logins"
	@echo "make worker     start a Celery worker (needs REDIS_URL)"
	@echo "make beat       start the Celery beat scheduler (needs REDIS_URL)"
	@echo "make schema     validate the OpenAPI schema (SCHEMA_FILE=schema.yml to write it)"
	@echo "make messages   update every app's zh_Hans catalogue from the code and compile it (needs gettext)"
	@echo "make clean      remove install stamps, db.sqlite3, staticfiles and caches (keeps .venv)"
	@echo "make distclean  clean, and remove .venv too"
	@echo "migrate, demo-data, worker, beat and schema run with ENVIRONMENT=$(ENVIRONMENT) (export ENVIRONMENT to change)"

# The virtual environment itself; its interpreter is the target so it is made once.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps: reinstall only when the lock files they depend on are newer than the last install.
$(VENV)/.installed-run: requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	@touch $@

$(VENV)/.installed-dev: requirements.lock requirements-dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	@touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run

install-dev: $(VENV)/.installed-dev

# The browser tests (marked `browser`) drive Debian's Chromium through its chromedriver, both from apt: no browser
# or driver is downloaded any other way (Selenium is given both paths, so its own downloader never runs), plus a
# small CJK font so the Chinese labels render (in the README's screenshot too). apt needs root: as root (CI's
# containers) it installs what is missing, through sudo when that needs no password, and otherwise it says what to
# run and fails. Without chromium and chromedriver the browser tests skip, saying why.
BROWSER_PACKAGES := chromium chromium-driver fonts-wqy-microhei

browser:
	@missing=$$(for package in $(BROWSER_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$package 2>/dev/null | grep -q ' installed$$' || echo $$package; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; \
		else \
			echo "make browser: missing Debian packages:" $$missing "- installing them with apt needs root." >&2; \
			echo "Run as root (or with sudo):" >&2; \
			echo "    apt-get update && apt-get install -y --no-install-recommends" $$missing >&2; \
			echo "Until chromium and chromium-driver are installed the browser tests (pytest -m browser) skip." >&2; \
			exit 1; \
		fi; \
		echo "Installing with apt:" $$missing; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing || exit 1; \
	fi; \
	echo "Browser ready: $$(chromium --version 2>/dev/null), $$(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"

# The pooling tests (tests/pooling, marked `pgbouncer`) start a PgBouncer of their own in transaction pooling mode
# from Debian's package (/usr/sbin/pgbouncer; only the binary is used: the package's own service is left alone).
# apt needs root, as for `make browser`. Without it the pooling tests skip, saying why; in CI (CI=true) they fail.
# PGBOUNCER=/path/to/pgbouncer (make and the tests) names another binary.
PGBOUNCER ?= /usr/sbin/pgbouncer

pgbouncer:
	@if [ ! -x $(PGBOUNCER) ]; then \
		if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; \
		else \
			echo "make pgbouncer: $(PGBOUNCER) is missing - installing Debian's pgbouncer with apt needs root." >&2; \
			echo "Run as root (or with sudo):" >&2; \
			echo "    apt-get update && apt-get install -y --no-install-recommends pgbouncer" >&2; \
			echo "Until it is installed the pooling tests (pytest -m pgbouncer) skip (and fail in CI)." >&2; \
			exit 1; \
		fi; \
		echo "Installing with apt: pgbouncer"; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer || exit 1; \
	fi; \
	[ -x $(PGBOUNCER) ] || { echo "make pgbouncer: $(PGBOUNCER) is still missing after apt" >&2; exit 1; }; \
	echo "PgBouncer ready: $$($(PGBOUNCER) --version | head -n 1)"

run: install
	ENVIRONMENT=development $(BIN)/python manage.py migrate --noinput
	ENVIRONMENT=development $(BIN)/python manage.py load_demo_data --site http://$(HOST):$(PORT)
	ENVIRONMENT=development $(BIN)/python manage.py runserver $(HOST):$(PORT)

test: install-dev
	ENVIRONMENT=test $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

audit: install-dev
	$(BIN)/python .ci/audit.py requirements-dev.lock

lock:
	@tools=$$(mktemp -d) && trap 'rm -rf "$$tools"' EXIT && \
	$(PYTHON) -m venv "$$tools" && "$$tools/bin/python" -m pip install --quiet $(PIP_TOOLS) && \
	CUSTOM_COMPILE_COMMAND="make lock" "$$tools/bin/pip-compile" $(LOCK_FLAGS) -o requirements.lock requirements.txt && \
	CUSTOM_COMPILE_COMMAND="make lock" "$$tools/bin/pip-compile" $(LOCK_FLAGS) -o requirements-dev.lock requirements-dev.txt

migrate: install
	ENVIRONMENT=$(ENVIRONMENT) $(BIN)/python manage.py migrate --noinput

demo-data: install
	ENVIRONMENT=$(ENVIRONMENT) $(BIN)/python manage.py load_demo_data

worker: install
	ENVIRONMENT=$(ENVIRONMENT) $(BIN)/celery -A loyalty worker -l info

beat: install
	ENVIRONMENT=$(ENVIRONMENT) $(BIN)/celery -A loyalty beat -l info --scheduler django_celery_beat.schedulers:DatabaseScheduler

schema: install
	ENVIRONMENT=$(ENVIRONMENT) $(BIN)/python manage.py spectacular --lang en --validate --fail-on-warn --file $(SCHEMA_FILE)

# One Simplified Chinese catalogue per app (<app>/locale/zh_Hans/LC_MESSAGES/django.po). `make messages` adds the
# strings marked in the code to it (file names only as locations, obsolete entries dropped) and compiles django.mo:
# translate the new entries, run it again, commit both files (the Docker image has no gettext, so the .mo files are
# committed). tests/loyalty/test_translations.py fails while a marked string has no translation.
LOCALE_APPS := loyalty members points tiers stored_value campaigns reports

messages: install
	@command -v msgfmt >/dev/null || { echo "make messages needs GNU gettext (apt-get install gettext)" >&2; exit 1; }
	@for app in $(LOCALE_APPS); do \
		(cd $$app && ENVIRONMENT=test ../$(BIN)/python ../manage.py makemessages -l zh_Hans --add-location file \
			--no-obsolete && ENVIRONMENT=test ../$(BIN)/python ../manage.py compilemessages -l zh_Hans) || exit 1; \
	done

clean:
	rm -f $(VENV)/.installed-run $(VENV)/.installed-dev db.sqlite3
	rm -rf staticfiles .pytest_cache .ruff_cache .hypothesis htmlcov .coverage
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
