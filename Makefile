# The two commands of the README: `make run` and `make test`.
# Everything else here serves them, or the long campaigns of `make fuzz` and `make reliability`.
SHELL := /bin/bash
.DEFAULT_GOAL := run

DEPS_STAMP := build/.deps-ok

.PHONY: run test deps build build-asan build-tsan build-clang build-clang-coverage test-unit \
	test-asan test-tsan test-fuzz fuzz reliability bench clean format

$(DEPS_STAMP): scripts/install-deps
	@scripts/install-deps
	@mkdir -p build && touch $@

deps: $(DEPS_STAMP)

build/%/build.ninja: CMakePresets.json | $(DEPS_STAMP)
	cmake --preset $* >/dev/null

build: deps build/default/build.ninja
	cmake --build --preset default

run: build
	./build/default/src/cli/tdxsim run

build-asan: deps build/asan/build.ninja
	cmake --build --preset asan
build-tsan: deps build/tsan/build.ninja
	cmake --build --preset tsan
build-clang: deps build/clang/build.ninja
	cmake --build --preset clang
build-clang-coverage: deps build/clang-coverage/build.ninja
	cmake --build --preset clang-coverage

test-unit: build
	ctest --preset default
# The concurrency tests under ASan+UBSan come from the clang-19 build, which is instrumented
# so for its fuzzers anyway: one sanitized build of every layer instead of two. The GCC
# `asan` preset stays for `make reliability` (and for a second compiler's view, by hand).
test-asan: build-clang
	ctest --preset clang
test-tsan: build-tsan
	ctest --preset tsan
# The clang-19 build (thread-safety analysis as errors) and its libFuzzer fuzzers: each
# replays its committed corpus, then fuzzes briefly (docs/fuzzing.md).
test-fuzz: build-clang
	scripts/fuzz-short

# The whole suite: unit and concurrency tests in the default build, the concurrency tests
# again under TSan and under ASan+UBSan, and the clang-19 build with the short fuzzing runs.
test: test-unit test-tsan test-asan test-fuzz
	@echo "make test: all suites passed"

# Long campaigns: FUZZ_TIME seconds per fuzzer (default 3600), FUZZ_JOBS processes each;
# the working corpora stay in build/fuzz-corpus/ (scripts/fuzz-campaign --help).
fuzz: build-clang
	FUZZ_TIME=$(FUZZ_TIME) FUZZ_JOBS=$(FUZZ_JOBS) scripts/fuzz-campaign

# The reliability campaign (docs/reliability.md): fixed parameters, resumable chunks;
# RELIABILITY_CHUNKS=N runs at most N of the chunks that remain at this commit.
reliability: build build-asan build-tsan build-clang build-clang-coverage
	RELIABILITY_CHUNKS=$(RELIABILITY_CHUNKS) scripts/reliability

bench: build
	./build/default/bench/platform_bench
	./build/default/bench/tdx_module_bench
	./build/default/bench/kvm_bench

format:
	find src bench -name '*.h' -o -name '*.cc' | xargs clang-format -i

clean:
	rm -rf build
