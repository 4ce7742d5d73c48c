# The two commands of the README: `make run` and `make test`.
# Everything else here serves them (or long campaigns a later issue adds).
SHELL := /bin/bash
.DEFAULT_GOAL := run

DEPS_STAMP := build/.deps-ok

.PHONY: run test deps build build-asan build-tsan build-clang-tsa test-unit test-asan test-tsan bench clean format

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
build-clang-tsa: deps build/clang-tsa/build.ninja
	cmake --build --preset clang-tsa

test-unit: build
	ctest --preset default
test-asan: build-asan
	ctest --preset asan
test-tsan: build-tsan
	ctest --preset tsan

# The whole suite: unit and concurrency tests in the default build, the concurrency tests
# again under TSan and under ASan+UBSan, and the clang-19 thread-safety build.
test: test-unit test-tsan test-asan build-clang-tsa
	@echo "make test: all suites passed"

bench: build
	./build/default/bench/platform_bench
	./build/default/bench/tdx_module_bench
	./build/default/bench/kvm_bench

format:
	find src bench -name '*.h' -o -name '*.cc' | xargs clang-format -i

clean:
	rm -rf build
