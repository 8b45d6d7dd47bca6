# The two commands of SPEC.md, and the pieces they are made of.
#   make run   installs what is missing, builds, starts the server
#   make test  the same set-up, then every test (format, unit, integration,
#              all under ASan+UBSan; fuzz smoke runs)
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
SOURCES = $(shell git ls-files -- 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'bench/*.c' 'bench/*.h' 2>/dev/null)

.PHONY: all deps build asan fuzz run test format format-check unit \
	integration test-asan fuzz-smoke valgrind bench clean sdk browser

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSHIVNERI_ASAN=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSHIVNERI_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

run: build
	@echo "shivneri: HTTP http://127.0.0.1:8025  SMTP 127.0.0.1:2525  agents 127.0.0.1:8026  data ./shivneri-data"
	exec ./$(BUILD)/shivneri serve

format:
	@clang-format -i $(SOURCES)

format-check: deps
	@clang-format --dry-run -Werror $(SOURCES)
	@echo "format: ok"

# The whole suite runs against the sanitizer build (units two at a time,
# then the process tests one at a time so that timing assertions are not
# starved); the optimized build is checked under valgrind.
test: format-check build asan fuzz-smoke sdk browser
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j 2 -R '^unit/'
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -R '^integration/'
	@scripts/valgrind.sh $(BUILD)

unit: asan
	@cd $(ASAN_BUILD) && ctest --output-on-failure -R '^unit/'

integration: asan sdk browser
	@cd $(ASAN_BUILD) && ctest --output-on-failure -R '^integration/'

# The official SDKs the drop-in tests drive (tests/sdk/package-lock.json
# pins them; node_modules is git-ignored).  Without npm the SDK tests skip.
sdk:
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/sdk && npm ci --no-audit --no-fund --loglevel=error >/dev/null && \
		echo "sdk: installed"; \
	else echo "sdk: npm not found, the SDK tests will be skipped"; fi

# Playwright (playwright-core, pinned in tests/browser/package-lock.json)
# for the console's browser tests; it drives Debian's /usr/bin/chromium, so
# no browser is downloaded.  Without npm those tests are skipped.
browser:
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
		npm ci --no-audit --no-fund --loglevel=error >/dev/null && \
		echo "browser: installed"; \
	else echo "browser: npm not found, the browser tests will be skipped"; fi

fuzz-smoke: fuzz
	@scripts/fuzz-smoke.sh $(FUZZ_BUILD)

valgrind: build
	@scripts/valgrind.sh $(BUILD)

bench: build
	@bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
