# Kith: `make run` starts the server, `make test` runs every test. Both install what they need.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/kith-target
CARGO ?= cargo

.PHONY: run test deps synapse lint lint-windows bench layout ui

# Build tools the tests need (cargo-nextest), if missing.
deps:
	@command -v cargo >/dev/null || { echo "Rust is required: install it with rustup"; exit 1; }
	@command -v cargo-nextest >/dev/null || $(CARGO) install cargo-nextest --locked

# Synapse from PyPI in a cached venv, the real peer of the federation tests; Pebble from
# Debian, the ACME authority of the certificate tests (`make test` installs both).
synapse:
	tests/synapse/install.sh

# The web UI (wizard and dashboard), built into ui/dist/; the kith binary embeds it, so it
# is built first.
ui:
	tests/ui/install.sh
	cd ui && npm run build

# With a display: the desktop app (its wizard on first start, then the dashboard and the
# tray). Without one: the headless server with defaults (kith.toml in the per-user data
# dir, created on first start) and the same dashboard at /_kith/; its first start prints
# a one-time setup link.
run: ui
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		src-tauri/install-deps.sh && $(CARGO) run --release -p kith-desktop; \
	else \
		$(CARGO) run --release -p kith-server-core --bin kith -- serve; \
	fi

# Clippy is `make lint`, not part of `make test`: on a cold two-core machine it needs a
# second, check-mode build of every dependency (about 20 more minutes).
# Synapse installs (network-bound) while the tests build (CPU-bound).
test: deps
	$(CARGO) fmt --all -- --check
	tests/pebble/install.sh
	tests/ui/install.sh --browser
	src-tauri/install-deps.sh --test
	cd ui && npm run build && npm test
	@tests/synapse/install.sh & installer=$$!; \
	if ! $(CARGO) nextest run --workspace --no-run; then kill $$installer; exit 1; fi; \
	wait $$installer
	$(CARGO) build --bin kith --bin kith-desktop
	$(CARGO) nextest run --workspace --no-fail-fast
	cd ui && KITH_BIN=$(CARGO_TARGET_DIR)/debug/kith npm run e2e
	tests/desktop/run.sh

lint: ui
	src-tauri/install-deps.sh
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The desktop app has Windows-only paths (Tauri's tray, the single-instance and autostart
# plugins; Linux uses its own): they must at least compile. Clippy for the Windows target,
# with Debian's MinGW for the C in the dependencies. Not part of `make test`: a cold run
# checks every dependency again for a second target (about 10 minutes here).
lint-windows: ui
	src-tauri/install-deps.sh --windows
	rustup target add x86_64-pc-windows-gnu
	$(CARGO) clippy --target x86_64-pc-windows-gnu -p kith-desktop -- -D warnings

# Numbers, not pass/fail: the same load run against Kith and Synapse (tests/bench/).
bench:
	tests/bench/run.sh

# Rewrites server-core/kith.order, the order of the release binary's functions (which the
# idle server's memory depends on), from a run under Valgrind. After dependency updates.
layout:
	tests/bench/layout.sh
