# Every target sets up what it needs: Debian packages (when missing), then .venv/ in this checkout.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# python3-dev, gcc, linux-libc-dev: evdev (HID scanners) is built from source; libusb: USB receipt printers;
# libzbar0: pyzbar, the second barcode decoder; fonts-wqy-microhei: Chinese for printers without a Chinese
# font (raster) and the virtual printer's pictures
APT_PACKAGES := python3 python3-venv python3-pip python3-dev gcc linux-libc-dev libusb-1.0-0 libzbar0 \
	fonts-wqy-microhei

# the browser the dashboard's end-to-end tests drive (Playwright with Debian's Chromium); the PostgreSQL server
# the hub's tests start in a temporary folder (tests/postgres.py: initdb and pg_ctl, never the packaged cluster)
TEST_APT_PACKAGES := chromium postgresql

.PHONY: demo test bench install system-packages clean

demo: $(STAMP)
	$(VENV)/bin/store-edge demo --config config.toml

test: $(STAMP)
	@$(MAKE) --no-print-directory system-packages APT_PACKAGES="$(TEST_APT_PACKAGES)"
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) -m bench all

# install on this PC as a service (Debian packages, user, /opt/store-edge venv, config, unit, udev rules)
install:
	$(SUDO) ./install.sh

# Debian packages, installed only when missing (apt needs root: sudo is used if not root).
system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory system-packages
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) var
