# moe: the two commands.
#   make run    set-up + build + `moe demo` (the main job)
#   make test   set-up + build + every test (also under ASan + UBSan)
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup build run test test-asan test-fuzz clean format format-check

all: build

setup:
	@scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)

run: build
	$(BUILD)/moe demo

test: build format-check
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	$(MAKE) test-asan
	$(MAKE) test-fuzz

# The CPU tests again, built with AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMOE_CUDA=OFF -DMOE_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j$(JOBS) -LE 'nosan'

# Bounded fuzzing of the file parsers (when their targets exist).
test-fuzz:
	@if [ -x scripts/fuzz.sh ]; then scripts/fuzz.sh; else echo "fuzz: no targets"; fi

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# Fails when a source file differs from what clang-format (.clang-format) makes of it.
format-check:
	@out=$$(clang-format --dry-run $$(git ls-files '*.c' '*.h' '*.cu' '*.cuh') 2>&1); \
	if [ -n "$$out" ]; then echo "$$out" | head -20; echo "format-check: run make format"; exit 1; fi; \
	echo "format-check: ok"
