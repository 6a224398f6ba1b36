# edgec developer entry points. `make demo` and `make test` work on a fresh Debian machine:
# they install what is missing (Debian packages via apt-get, npm packages via npm ci) first.
SHELL := /bin/bash
CORPUS ?= ../shared/corpus
JOBS ?= 2
EDGEC := node bin/edgec.js

# Toolchains and runtimes the tests drive for real: cross compilers, qemu, OpenCL (PoCL), clang
# with the wasm32 sysroot (llvm for llvm-ar and llvm-objdump on wasm objects), Chromium for the
# wasm32 package's browser test (driven by playwright-core), and sshd for deploy tests.
APT_PACKAGES := gcc make gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf \
	libc6-dev-armhf-cross qemu-user pocl-opencl-icd ocl-icd-opencl-dev opencl-headers clang lld \
	wasi-libc libclang-rt-dev-wasm32 llvm chromium openssh-server openssh-client ansible
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Only `make bench` needs these: Debian's torch and torchvision export the benchmark's networks.
BENCH_APT_PACKAGES := python3-torch python3-torchvision python3-onnx python3-numpy
BENCH_MODELS := build/bench-models

.PHONY: setup setup-apt setup-npm setup-bench build test conformance conformance-host conformance-rpi4 conformance-wasm32 conformance-opencl demo bench bench-wasm bench-deploy bench-memory bench-opencl clean

setup: setup-apt setup-npm

# Idempotent: installs only the packages of $(1) that dpkg does not already report as installed.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "setup: Debian packages present"; fi
endef

setup-apt:
	$(call apt_install,$(APT_PACKAGES))

setup-bench:
	$(call apt_install,$(BENCH_APT_PACKAGES))

setup-npm: node_modules/.package-lock.json

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

build: setup-npm
	npx tsc -p tsconfig.json

test: setup build
	npx vitest run $(VITEST_ARGS)

conformance: conformance-host conformance-rpi4 conformance-wasm32 conformance-opencl

conformance-host: setup build
	$(EDGEC) conformance $(CORPUS)/onnx-node $(CORPUS)/onnx-pytorch-converted $(CORPUS)/models --target host -j $(JOBS)

conformance-rpi4: setup build
	$(EDGEC) conformance $(CORPUS)/onnx-node $(CORPUS)/onnx-pytorch-converted $(CORPUS)/models --target rpi4 -j $(JOBS)

conformance-wasm32: setup build
	$(EDGEC) conformance $(CORPUS)/onnx-node $(CORPUS)/onnx-pytorch-converted $(CORPUS)/models --target wasm32 -j $(JOBS)

# Every kernel as OpenCL C, run through this machine's OpenCL platform (PoCL on the CPU here).
conformance-opencl: setup build
	$(EDGEC) conformance $(CORPUS)/onnx-node $(CORPUS)/onnx-pytorch-converted $(CORPUS)/models --target opencl --placement gpu -j $(JOBS)

# Peak activation memory of the irregular-network suite: graph order, DP schedule, DP + rewriting.
bench-memory: setup build
	EDGEC_BENCH=1 npx vitest run test/graph/memory-table.bench.test.ts

# Deploy a MobileNetV2 artifact to 1 and to 20 loopback sshd devices (--parallel 8) and print both times.
bench-deploy: setup build
	EDGEC_BENCH=1 npx vitest run test/deploy/timing.bench.test.ts

# The speed benchmark: the torchvision networks at 224x224 (exported once into build/bench-models
# with Debian's torch, which `make setup-bench` installs) and the corpus models, each on 1
# thread and on all cores against onnxruntime-node. Prints a Markdown table and geometric means.
bench: setup setup-bench build
	@if [ ! -f $(BENCH_MODELS)/.exported ]; then \
	  if /usr/bin/python3 -c 'import torch, torchvision, onnx' 2>/dev/null; then \
	    /usr/bin/python3 $(CORPUS)/export_models.py --set big --out $(BENCH_MODELS) && touch $(BENCH_MODELS)/.exported; \
	  else echo "bench: Debian python3-torch/python3-torchvision/python3-onnx did not install: benchmarking the corpus models only" >&2; fi; \
	fi
	node examples/bench.mjs $$([ -f $(BENCH_MODELS)/.exported ] && echo $(BENCH_MODELS)) $(CORPUS)/models

# The same models as WebAssembly in Node, one thread, against onnxruntime-web's wasm backend (SIMD,
# one thread), with the size of the package's download (and of model.wasm plus weights) against the model file.
bench-wasm: setup setup-bench build
	@if [ ! -f $(BENCH_MODELS)/.exported ] && /usr/bin/python3 -c 'import torch, torchvision, onnx' 2>/dev/null; then \
	  /usr/bin/python3 $(CORPUS)/export_models.py --set big --out $(BENCH_MODELS) && touch $(BENCH_MODELS)/.exported; fi
	node examples/bench.mjs --target wasm32 $$([ -f $(BENCH_MODELS)/.exported ] && echo $(BENCH_MODELS)) $(CORPUS)/models

# The corpus models on edgec's C backend and on its OpenCL backend (through PoCL here: a CPU
# emulating the GPU), as a Markdown table of medians.
bench-opencl: setup build
	node examples/bench-opencl.mjs $(CORPUS)/models

demo: setup build
	node examples/demo.mjs

clean:
	rm -rf dist build
