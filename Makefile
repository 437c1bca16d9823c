# prunehook: `make run` serves the app, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000

.PHONY: run test lint docs format system-deps constraints clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# constraints.txt pins every package `.[test,gcp,aws,docs]` installs, so a fresh clone tests what was tested;
# refresh it after changing pyproject.toml's dependencies: make constraints
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test,gcp,aws,docs]'
	touch $@

run: $(VENV)/.installed  ## serve with gunicorn on 127.0.0.1:$$PORT (default 8000)
	PORT=$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py --bind 127.0.0.1:$(PORT) wsgi:app

# the Debian packages the integration tests drive for real: sshd, dockerd, a browser for the
# status page (tests/test_status_page.py) with the font it recommends (the page's layout is
# checked in it), PostgreSQL (tests/harness/postgres.py), nginx (tests/test_nginx.py),
# systemd-analyze (tests/test_systemd.py), and Prometheus, Alertmanager and node_exporter with
# promtool and amtool (tests/test_prometheus.py); without their other recommends (146
# packages instead of 39 for the first three alone: printing, audio, avahi, perl), which
# would add much to CI's apt time and nothing the tests use
system-deps:  ## install sshd, dockerd, chromium, PostgreSQL, nginx and Prometheus from Debian when missing (needs root)
	@missing=""; \
	command -v /usr/sbin/sshd >/dev/null 2>&1 || missing="$$missing openssh-server"; \
	command -v dockerd >/dev/null 2>&1 && [ -x /usr/bin/docker ] || missing="$$missing docker.io"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium fonts-liberation"; \
	command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
	  || missing="$$missing postgresql"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
	  || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 \
	  || missing="$$missing prometheus-alertmanager"; \
	command -v prometheus-node-exporter >/dev/null 2>&1 || missing="$$missing prometheus-node-exporter"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "not root: cannot install$$missing; the tests that need them will skip (fail under CI=true)"; \
	  fi; \
	fi

lint: $(VENV)/.installed  ## ruff lint and format check, mypy type check (pyproject.toml [tool.mypy])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# the docs site (mkdocs.yml) with --strict: a broken link, a missing page or a reference the
# settings schema cannot generate fails; site/ is the output (a second or two)
docs: $(VENV)/.installed  ## build the docs site into site/, failing on any warning
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

format: $(VENV)/.installed  ## apply ruff's formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Debian's packages and the virtualenv install side by side (both mostly wait on downloads),
# then ruff, mypy and the docs build side by side; each one's output kept together (-Otarget)
test:  ## install what the suite needs, then ruff, mypy, the docs and pytest (four workers)
	@$(MAKE) --no-print-directory -j3 -Otarget system-deps lint docs
	$(BIN)/pytest -n 4

constraints: $(VENV)/.installed  ## re-pin constraints.txt from what the virtualenv has now
	$(BIN)/pip install -q -e '.[test,gcp,aws,docs]'
	{ echo '# every package `pip install -e .[test,gcp,aws,docs]` installs, pinned: make constraints re-pins'; \
	  $(BIN)/pip freeze --all --exclude pip --exclude-editable; } > constraints.txt

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info site
