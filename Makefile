# Every target sets up what it needs: Debian packages (when missing), then .venv/ in this checkout.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := python3 python3-venv python3-pip fonts-wqy-microhei libusb-1.0-0
# libusb: USB receipt printers (pyusb); the CJK font draws Chinese for printers without a Chinese font (raster) and the virtual printer's PNGs
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc

.PHONY: demo test bench system-packages clean

demo: $(STAMP)
	$(VENV)/bin/store-edge demo --config config.toml

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m bench all

# Debian packages, installed only when missing (apt needs root: sudo is used if not root).
system-packages:
	@if ! python3 -c 'import sys, ensurepip, venv; assert sys.version_info >= (3, 11)' 2>/dev/null \
		|| [ ! -f $(CJK_FONT) ] || ! /sbin/ldconfig -p | grep -q libusb-1.0.so; then \
		echo "installing Debian packages: $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory system-packages
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) var
