# volplugin build, test and run targets. `make test` and `make run` install
# whatever is missing first (scripts/deps.sh).

GO      ?= go
TAGS    ?= pacific
BIN     := bin
# Every command under cmd/ (volmaster, volcli; volplugin and volsupervisor as
# they land).
CMDS    := $(notdir $(wildcard cmd/*))
RUN_DIR ?= $(CURDIR)/.run
# Benchmark knobs: `make bench VOLMASTER=http://host:9005` runs the list/get
# benchmarks against a live volmaster (it creates the volumes it needs).
BENCHTIME ?= 2s
export CGO_ENABLED := 1

.PHONY: all deps build test vet fmt-check bench run clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@mkdir -p $(BIN)
	$(GO) build -tags $(TAGS) -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet -tags $(TAGS) ./...

# Every test, with the race detector. Tests that need root (loop devices,
# mounts) run when root and say why they skip otherwise.
test: build fmt-check vet
	$(GO) test -race -tags $(TAGS) -count=1 -timeout 20m ./...

bench: build
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchtime $(BENCHTIME) ./systemtests/ ./volplugin/

# The suite on the embedded default: volmaster (embedded etcd, local
# backend) and volplugin, data under $(RUN_DIR). Stop with Ctrl-C.
run: build
	RUN_DIR=$(RUN_DIR) scripts/run

clean:
	rm -rf $(BIN)
