# vitd: one entry point.  make | make run | make test | make test-asan | make bench | make install | make clean
# Sources are found by wildcard: engine/*.c and engine/<room>/*.c (cpu, cuda, image, io, train)
# -> libvit, engine/cli/*.c -> build/vit, server/*.c -> build/vitd, tests/unit/test_*.c -> one
# binary each.  CUDA (engine/cuda/*.cu) is built only when nvcc is found; elsewhere the build is
# CPU-only.  Header dependencies come from the compilers (-MMD -MP: build/**/*.d); a change of
# compiler or flags (NVCC=, OPT, SAN, CFLAGS...) rebuilds through the flags stamp, build/.flags.
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -Iengine -MMD -MP $(SAN)
CFLAGS  += $(shell pkg-config --cflags openblas libpng libturbojpeg libcjson zlib 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs openblas libpng libturbojpeg libjpeg libcjson zlib 2>/dev/null || echo -lopenblas -lpng -lturbojpeg -ljpeg -lcjson -lz)
LDLIBS  += -lm -lpthread
LDFLAGS += $(SAN)
MHD_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd) \
            $(shell pkg-config --libs libpq 2>/dev/null || echo -lpq)
CFLAGS  += $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
# what `vit --version`, `vitd --version`, /v1/models, GET /v2 and vitd_build_info report
BUILD_TYPE ?= $(if $(findstring fuzzer,$(SAN)),fuzz,$(if $(findstring address,$(SAN)),asan,$(if $(filter -O0 -O1,$(OPT)),debug,release)))
CFLAGS  += -I$(BUILD)/gen

# ---- CUDA (optional) --------------------------------------------------------
NVCC ?= $(shell command -v nvcc 2>/dev/null || ( [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc ))
ENGINE_ROOMS := cpu cuda image io train
CUDA_SRC := $(wildcard kernels/*.cu $(ENGINE_ROOMS:%=engine/%/*.cu))
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(CUDA_SRC)),)
CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
# CUDA_ARCHS: the SM versions to build SASS for (PTX for the last one too), e.g.
# make CUDA_ARCHS="75 80 86 89 90" (deploy/Dockerfile's ARG); CUDA_ARCH overrides the whole list.
CUDA_ARCHS ?= 80 90
CUDA_ARCH  ?= $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
              -gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS))
NVCCFLAGS  ?= -O3 -std=c++17 $(CUDA_ARCH) -Iengine -Ikernels -Xcompiler -Wall,-fPIC --expt-relaxed-constexpr -MMD -MP
CFLAGS     += -DVIT_HAVE_CUDA -I$(CUDA_HOME)/include
LDLIBS     += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
CUDA_OBJ   := $(CUDA_SRC:%.cu=$(BUILD)/%.cu.o)
HAVE_CUDA  := 1
endif
endif

ENGINE_SRC := $(wildcard engine/*.c $(ENGINE_ROOMS:%=engine/%/*.c))
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o) $(CUDA_OBJ)
CLI_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(wildcard engine/cli/*.c))
SERVER_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard server/*.c))
# Files compiled into vitd (server/assets.h), URLPATH=FILE: the web page (server/ui/, issue 18)
# and the OpenAPI document.  server/assets/gen_assets.c writes their bytes as C (the one way a
# file gets into vitd).  Order matters: index.html names the others by content hash, so it
# comes after them.
ASSETS     := /ui/app.css=server/ui/app.css /ui/app.js=server/ui/app.js /=server/ui/index.html \
              /openapi.json=server/openapi.json
ifneq ($(strip $(SERVER_OBJ)),)
SERVER_OBJ += $(BUILD)/gen/assets.o
endif
TEST_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BINS  := $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz/replay_%)
LIBVIT     := $(BUILD)/libvit.a

BINS := $(BUILD)/vit
ifneq ($(strip $(SERVER_OBJ)),)
BINS += $(BUILD)/vitd
endif

.PHONY: all deps deps-test deps-bench run test test-unit test-fleet test-asan test-attack bench clean install install-systemd
all: deps $(BINS) $(TEST_BINS) $(REPLAY_BINS)

# Debian packages (idempotent; installs only what is missing).
deps:
	@scripts/deps.sh build
deps-test: deploy/node_modules/.package-lock.json
	@scripts/deps.sh test
# the deploy checks' validator (deploy/validate.js), pinned by deploy/package-lock.json
deploy/node_modules/.package-lock.json: deploy/package-lock.json deploy/package.json
	@scripts/deps.sh test
	npm ci --prefix deploy --no-audit --no-fund --loglevel=error
deps-bench:
	@scripts/deps.sh bench

# The version header: rewritten only when git describe / the commit / the build type change.
.PHONY: FORCE
$(BUILD)/gen/vit_build.h: FORCE
	@scripts/gen_version.sh $@ $(BUILD_TYPE)
$(BUILD)/engine/version.o: $(BUILD)/gen/vit_build.h

# The flags stamp: $(BUILD)/.flags holds the compilers and flags in effect, one per line, and is
# rewritten only when they differ from the last make in this BUILD dir.  Every object and binary
# depends on it, so `make` then `make NVCC=` (or another OPT, SAN, CFLAGS, CUDA_ARCHS...) in the
# same BUILD dir rebuilds everything instead of linking objects compiled both ways.
FLAGS_STAMP := $(BUILD)/.flags
FLAG_VARS := CC CFLAGS CXX EMU_CXXFLAGS EMU_RACE_FLAGS NVCC NVCCFLAGS LDFLAGS LDLIBS MHD_LIBS
shell_quote = '$(subst ','\'',$(1))'
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@printf '%s\n' $(foreach v,$(FLAG_VARS),$(call shell_quote,$(v)=$($(v)))) > $@.new
	@if cmp -s $@.new $@; then rm -f $@.new; else [ ! -f $@ ] || echo "$@: flags changed, rebuilding"; mv -f $@.new $@; fi

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tools/gen_assets: server/assets/gen_assets.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -Wall -Wextra -Werror -o $@ $<

# regenerated when a file, the generator or the ASSETS list (this Makefile) changes
$(BUILD)/gen/assets.c: $(BUILD)/tools/gen_assets $(foreach a,$(ASSETS),$(lastword $(subst =, ,$(a)))) Makefile
	@mkdir -p $(dir $@)
	$(BUILD)/tools/gen_assets $@ $(ASSETS)

$(BUILD)/gen/assets.o: $(BUILD)/gen/assets.c $(FLAGS_STAMP)
	$(CC) $(CFLAGS) -Iserver -c $< -o $@

$(BUILD)/%.cu.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIBVIT): $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/vit: $(CLI_OBJ) $(LIBVIT) $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIBVIT) $(LDLIBS)

$(BUILD)/vitd: $(SERVER_OBJ) $(LIBVIT) $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(SERVER_OBJ) $(LIBVIT) $(MHD_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIBVIT) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(LIBVIT) $(LDLIBS)

# The PostgreSQL admin store's contract test: includes server files, links libpq; run by
# tests/integration/test_store_pg.py against a database it starts (not a plain unit test).
all: $(BUILD)/tests/store_pg_contract
$(BUILD)/tests/store_pg_contract: tests/unit/store_pg_contract.c $(LIBVIT) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -Iserver $(LDFLAGS) -o $@ $< $(LIBVIT) $(MHD_LIBS) $(LDLIBS)

# Fuzz harnesses (tests/fuzz/fuzz_*.c) with a plain main() that replays their corpora in
# `make test` (tests/integration/test_fuzz_replay.sh); gcc, no libFuzzer needed.
$(BUILD)/tests/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(LIBVIT) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz $(LDFLAGS) -o $@ tests/fuzz/replay_main.c $< $(LIBVIT) $(LDLIBS)

# ---- fuzzing with clang + libFuzzer (not needed by `make test`; tests/fuzz/README.md):
# `make fuzz` builds build-fuzz/fuzz/fuzz_<target>; tests/fuzz/run.sh runs a campaign.
.PHONY: fuzz fuzz-bins
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
            -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
fuzz:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory NVCC= CC=clang BUILD=build-fuzz OPT=-O1 SAN="$(FUZZ_SAN)" fuzz-bins
fuzz-bins: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIBVIT) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(LIBVIT) $(LDLIBS)

# ---- GPU tests and the kernel lab: built only on request (they need a GPU to run), e.g. by
# bench/gpu_check.sh.  tests/gpu/*.cu are standalone kernel tests, tests/gpu/*.c link libvit.
GPU_TEST_BINS := $(patsubst tests/gpu/%.cu,$(BUILD)/tests/gpu/%,$(wildcard tests/gpu/*.cu)) \
                 $(patsubst tests/gpu/%.c,$(BUILD)/tests/gpu/%,$(wildcard tests/gpu/*.c))
.PHONY: gpu-tests kernel-lab
ifeq ($(HAVE_CUDA),1)
gpu-tests: $(GPU_TEST_BINS)
$(BUILD)/tests/gpu/%: tests/gpu/%.cu $(wildcard kernels/*.cuh tests/gpu/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -Itests/gpu -o $@ $< -lcublasLt
$(BUILD)/tests/gpu/%: tests/gpu/%.c $(LIBVIT) $(wildcard tests/unit/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -Itests/gpu $(LDFLAGS) -o $@ $< $(LIBVIT) $(LDLIBS)
kernel-lab:
	$(MAKE) -C kernels/dev NVCC="$(NVCC)" CUDA_ARCH="$(CUDA_ARCH)" BUILD=$(abspath $(BUILD))/kernel-lab
else
gpu-tests kernel-lab:
	@echo "$@: nvcc not found, nothing to build (the CUDA parts are optional)"
endif

# ---- The CUDA kernels on the CPU SIMT emulator (tests/emu/README.md): kernels/*.cuh, the kernel
# checks tests/gpu/test_kernels.cu (the same file nvcc builds for gpu-tests) and tests/emu/*.cpp
# rewritten to host C++ by tests/emu/gen_host.py (launches, __shared__), compiled with g++
# against the shim headers in tests/emu/include.  Built only in the ASan+UBSan build (make
# test's second pass, make test-asan), where tests/run.sh runs them as asan:test_emu_*.
# No nvcc, no GPU.
PYTHON3  ?= python3
EMU_GEN  := $(patsubst kernels/%.cuh,$(BUILD)/emu/gen/%.cuh,$(wildcard kernels/*.cuh))
EMU_BINS := $(patsubst tests/emu/%.cpp,$(BUILD)/tests/%,$(wildcard tests/emu/test_emu_*.cpp)) \
            $(BUILD)/tests/test_emu_kernels
EMU_DEPS := $(BUILD)/emu/gen/test_kernels.cpp $(EMU_GEN) $(FLAGS_STAMP) \
            $(wildcard tests/emu/include/*.h tests/emu/*.h tests/gpu/*.h engine/*.h $(ENGINE_ROOMS:%=engine/%/*.h))
EMU_CXXFLAGS := -std=gnu++17 $(OPT) -g -Wall -Wextra -Werror -Wno-unknown-pragmas -ffp-contract=off \
                -fno-strict-aliasing $(SAN) -Itests/emu/include -I$(BUILD)/emu/gen -Iengine -Itests/gpu \
                -Itests/emu
# test_emu_race: the kernel checks again with the race check, plus its own tests
# (tests/emu/race_self.cpp): emu.cpp built with -DEMU_RACE, the test code compiled with GCC's
# -fsanitize=thread instrumentation, whose hooks emu.cpp provides: no libtsan, no ASan in this one.
EMU_RACE_FLAGS := $(filter-out $(SAN),$(EMU_CXXFLAGS)) -DEMU_RACE
ifneq ($(findstring address,$(SAN)),)
all: $(EMU_BINS) $(BUILD)/tests/test_emu_race
endif
.SECONDARY: $(EMU_GEN) $(patsubst tests/emu/%.cpp,$(BUILD)/emu/gen/%.cpp,$(wildcard tests/emu/*.cpp)) \
            $(BUILD)/emu/gen/test_kernels.cpp
$(BUILD)/emu/gen/%.cuh: kernels/%.cuh tests/emu/gen_host.py
	@mkdir -p $(dir $@)
	$(PYTHON3) tests/emu/gen_host.py $< $@
$(BUILD)/emu/gen/%.cpp: tests/emu/%.cpp tests/emu/gen_host.py
	@mkdir -p $(dir $@)
	$(PYTHON3) tests/emu/gen_host.py $< $@
$(BUILD)/emu/gen/test_kernels.cpp: tests/gpu/test_kernels.cu tests/emu/gen_host.py
	@mkdir -p $(dir $@)
	$(PYTHON3) tests/emu/gen_host.py $< $@
$(BUILD)/emu/emu.o: tests/emu/emu.cpp $(wildcard tests/emu/include/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@
$(BUILD)/emu/emu_race.o: tests/emu/emu.cpp $(wildcard tests/emu/include/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_RACE_FLAGS) -c $< -o $@
$(BUILD)/tests/test_emu_race: $(BUILD)/emu/gen/race_self.cpp $(BUILD)/emu/emu_race.o $(EMU_DEPS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_RACE_FLAGS) -fsanitize=thread -c $(BUILD)/emu/gen/test_kernels.cpp -o $@.o
	$(CXX) $(EMU_RACE_FLAGS) -fsanitize=thread -c $(BUILD)/emu/gen/race_self.cpp -o $@.self.o
	$(CXX) -o $@ $@.o $@.self.o $(BUILD)/emu/emu_race.o -ldl
	rm -f $@.o $@.self.o
$(BUILD)/tests/test_emu_kernels: $(BUILD)/emu/emu.o $(EMU_DEPS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(LDFLAGS) -o $@ $(BUILD)/emu/gen/test_kernels.cpp $(BUILD)/emu/emu.o
$(BUILD)/tests/test_emu_%: $(BUILD)/emu/gen/test_emu_%.cpp $(BUILD)/emu/emu.o $(EMU_DEPS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/emu/emu.o

# Serve the shipped default model.
run: all
	$(BUILD)/vitd $(ARGS)

# The whole suite: unit tests, CLI tests, integration tests against the real daemon,
# and the bad-input tests again under ASan+UBSan.  Ends with "N passed, M failed".
test: deps deps-test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory NVCC= BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" all
	@tests/run.sh

test-unit: all
	@VITD_TEST_ONLY=unit tests/run.sh

# The fleet test's longer form (make test runs the short one): PostgreSQL, three replicas and
# haproxy on 127.0.0.1; more activations, kill -9 rounds and classifications.
test-fleet: all deps-test
	@VITD_FLEET_LONG=1 $(PYTHON3) tests/integration/test_fleet.py

# Hostile clients (tests/attack): every attack for 20 s, then a 10-minute soak of mixed legit and
# hostile traffic with the daemon's RSS sampled every 10 s, recorded in bench/results.
# (`make test` runs the short form: tests/integration/test_attacks.py, 4 s per attack.)
ATTACK_OUT ?= bench/results/attack_soak.txt
test-attack: all
	tests/attack/run_attacks.py --seconds 20 --soak 600 --out $(ATTACK_OUT)

test-asan: deps-test
	@$(MAKE) --no-print-directory NVCC= BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" all
	@VITD_TEST_ONLY=asan tests/run.sh

bench: all deps-bench
	bench/run_all.sh

# Install the binaries and the shipped model: make install [PREFIX=/usr/local] [DESTDIR=...]
PREFIX  ?= /usr/local
SHIPPED := $(wildcard models/fashion-vit/config.json models/fashion-vit/model.safetensors models/fashion-vit/preprocessor_config.json)
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/vitd
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/vitd/
ifneq ($(strip $(SHIPPED)),)
	install -d $(DESTDIR)$(PREFIX)/share/vitd/models/fashion-vit
	install -m 0644 $(SHIPPED) $(DESTDIR)$(PREFIX)/share/vitd/models/fashion-vit/
endif

# The systemd unit (deploy/systemd/), its paths rewritten for PREFIX.
install-systemd:
	install -d $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/vitd
	sed 's|/usr/local|$(PREFIX)|g' deploy/systemd/vitd.service > $(DESTDIR)/etc/systemd/system/vitd.service
	install -m 0600 deploy/systemd/vitd.env.example $(DESTDIR)/etc/vitd/vitd.env.example

clean:
	rm -rf build build-asan build-fuzz

# header dependencies written by -MMD -MP next to each object and binary
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
