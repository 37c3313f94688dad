# volplugin build, test and run targets. `make test` and `make run` install
# whatever is missing first (scripts/deps.sh).

GO      ?= go
TAGS    ?= pacific
BIN     := bin
# Every command under cmd/ (volmaster, volplugin, volsupervisor, volcli,
# volcsi).
CMDS    := $(notdir $(wildcard cmd/*))
RUN_DIR ?= $(CURDIR)/.run
# `make bench` prints one table of every figure (internal/benchtable);
# `make bench SHORT=1` runs each briefly at a small size, as make test does.
# `make bench VOLMASTER=http://host:9005` runs the list/get benchmarks
# against a live volmaster (it creates the volumes it needs).
SHORT ?=
export CGO_ENABLED := 1
# Debian's own Go (scripts/deps.sh installs it where none is found) defaults
# to GOTOOLCHAIN=local and would refuse go.mod's newer go line: let it fetch
# that toolchain through the module proxy.
export GOTOOLCHAIN ?= auto

.PHONY: all deps build test vet fmt-check bench run stop clean fuzz plugin csi-image

all: build

deps:
	@scripts/deps.sh

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/volplugin/volplugin/internal/diag.Version=$(VERSION) -X github.com/volplugin/volplugin/internal/diag.Commit=$(COMMIT)

build: deps
	@mkdir -p $(BIN)
	$(GO) build -tags $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet -tags $(TAGS) ./...

# Every test, with the race detector. Tests that need root (loop devices,
# mounts) run when root and say why they skip otherwise. The Ceph backend's
# tests run against a throwaway single-node cluster that scripts/ceph-dev
# starts (installing Debian's ceph packages if missing) and always stops
# afterwards, keeping go test's exit status.
CEPH_DEV := scripts/ceph-dev
# The fuzz targets run first (5 s each), so go test's summary closes the output.
test: build fmt-check vet
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s
	@table=$$(mktemp); trap '$(CEPH_DEV) down; rm -f $$table $$table.bench' EXIT; \
	t0=$$(date +%s); $(CEPH_DEV) up >/dev/null || exit 1; \
	echo "ceph-dev up: $$(($$(date +%s) - t0))s"; \
	eval "$$($(CEPH_DEV) env)" && export CEPH_CONF && \
	FAULT_TABLE=$$table $(GO) test -race -tags $(TAGS) -count=1 -timeout 20m ./...; rc=$$?; \
	if [ -s $$table ]; then echo "fault suite (systemtests/faults_*_test.go): every counter must be 0"; cat $$table; fi; \
	echo "bench table, short run (figures of make bench, not to be quoted):"; \
	$(GO) run ./internal/benchtable/cmd/benchtable -tags $(TAGS) -short 2>$$table.bench || { rc=1; tail -n 60 $$table.bench; }; \
	exit $$rc

# The Ceph figures run on a throwaway cluster started (and stopped) here.
bench: build
	@trap '$(CEPH_DEV) down' EXIT; $(CEPH_DEV) up >/dev/null || exit 1; \
	eval "$$($(CEPH_DEV) env)" && export CEPH_CONF && \
	$(GO) run ./internal/benchtable/cmd/benchtable -tags $(TAGS) $(if $(SHORT),-short)

# Native Go fuzzing: every Fuzz* target of FUZZ_PKGS, one at a time (go test
# fuzzes a single target per run) for $(FUZZTIME) each, printing the inputs
# executed. A failure prints the log, which names the crasher written under
# <pkg>/testdata/fuzz/<Target>/. Seeds and those corpora also run as plain
# tests. The volmaster targets run embedded etcd in process, whose background
# goroutines make inputs look "interesting" at random; minimizing each for the
# default 60s would eat the budget, hence FUZZMINTIME.
FUZZTIME    ?= 15s
FUZZMINTIME ?= 1s
FUZZ_PKGS   ?= ./config ./volmaster

fuzz:
	@log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for pkg in $(FUZZ_PKGS); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    printf '%-45s ' "$$pkg $$t"; \
	    if ! $(GO) test -run '^$$$$' -fuzz "^$$t\$$$$" -fuzztime $(FUZZTIME) \
	        -fuzzminimizetime $(FUZZMINTIME) $$pkg >$$log 2>&1; then \
	      echo FAIL; cat $$log; exit 1; \
	    fi; \
	    echo "$$(grep -o 'execs: [0-9]*' $$log | tail -1 || true) in $(FUZZTIME)"; \
	  done; \
	done

# The suite on the embedded default: volmaster (embedded etcd, local
# backend) and volplugin, data under $(RUN_DIR). Stop with Ctrl-C.
# exec: scripts/run is make's own child, so the SIGTERM make forwards on
# `kill PID-of-make` reaches it (make forwards no SIGINT: use make stop).
run: build
	exec env RUN_DIR=$(RUN_DIR) scripts/run

# Stops a `make run` of this RUN_DIR from another terminal, and waits (30 s at
# most) until it has stopped its daemons.
stop:
	@pid=$$(cat $(RUN_DIR)/run.pid 2>/dev/null) || { echo "no make run here (no $(RUN_DIR)/run.pid)"; exit 0; }; \
	kill -TERM $$pid 2>/dev/null || { echo "make run (pid $$pid) is not running"; rm -f $(RUN_DIR)/run.pid; exit 0; }; \
	for i in $$(seq 1 300); do kill -0 $$pid 2>/dev/null || { echo "make run (pid $$pid) stopped"; exit 0; }; sleep 0.1; done; \
	echo "make run (pid $$pid) still running after 30s" >&2; exit 1

clean:
	rm -rf $(BIN)

# The managed Docker plugin: a rootfs built from Debian packages (cached in
# .cache/) plus bin/volplugin, then `docker plugin create $(PLUGIN)` against
# the engine DOCKER_HOST names (default: the local one). Enable it with
# `docker plugin set` + `docker plugin enable` (docs/operator-guide.md).
PLUGIN ?= volplugin:latest
plugin: build
	scripts/plugin create $(PLUGIN) $(BIN)/volplugin

# volcsi's container image on the plugin's rootfs, `docker import`ed into the
# engine DOCKER_HOST names; deploy/kubernetes names this tag.
CSI_IMAGE ?= volplugin/volcsi:latest
csi-image: build
	scripts/plugin csi-image $(CSI_IMAGE) $(BIN)/volcsi

# Installation. `make build` first, then as root `make install`. PREFIX is
# where the binaries live at run time (the units' ExecStart= is rewritten to
# it); DESTDIR stages the whole tree elsewhere (packages, tests). Existing
# configuration files in $(CONFDIR) are never overwritten.
PREFIX  ?= /usr
BINDIR  ?= $(PREFIX)/bin
DOCDIR  ?= $(PREFIX)/share/doc/volplugin
UNITDIR ?= /lib/systemd/system
CONFDIR ?= /etc/volplugin
# volcli's shell completion (the scripts `volcli completion bash|zsh` prints).
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/vendor-completions

.PHONY: install docs

install:
	@for b in $(CMDS); do [ -x $(BIN)/$$b ] || { echo "install: $(BIN)/$$b is missing: run make build first" >&2; exit 1; }; done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(addprefix $(BIN)/,$(CMDS)) $(DESTDIR)$(BINDIR)/
	@for u in packaging/systemd/*.service; do \
		t=$(DESTDIR)$(UNITDIR)/$$(basename $$u); \
		echo "install $$u -> $$t"; \
		sed -e 's|/usr/bin/|$(BINDIR)/|g' -e 's|/etc/volplugin/|$(CONFDIR)/|g' \
			-e 's|/usr/share/doc/volplugin/|$(DOCDIR)/|g' $$u > $$t.tmp && \
		chmod 0644 $$t.tmp && mv $$t.tmp $$t || exit 1; \
	done
	@for f in packaging/etc/volplugin/*.env; do \
		t=$(DESTDIR)$(CONFDIR)/$$(basename $$f); \
		if [ -e $$t ]; then echo "install: keeping $$t"; \
		else echo "install $$f -> $$t"; install -m 0644 $$f $$t || exit 1; fi; \
	done
	install -m 0644 docs/*.md docs/openapi.yaml $(DESTDIR)$(DOCDIR)/
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	install -m 0644 internal/volcli/completion/volcli.bash $(DESTDIR)$(BASHCOMPDIR)/volcli
	install -m 0644 internal/volcli/completion/_volcli $(DESTDIR)$(ZSHCOMPDIR)/_volcli
	install -d $(DESTDIR)$(DOCDIR)/prometheus $(DESTDIR)$(DOCDIR)/grafana
	install -m 0644 deploy/prometheus/*.yml $(DESTDIR)$(DOCDIR)/prometheus/
	install -m 0644 deploy/grafana/*.json $(DESTDIR)$(DOCDIR)/grafana/

# Regenerate docs/volcli.md from volcli's command definitions (docs/docs_test.go
# fails when it is stale).
docs:
	$(GO) run ./internal/clidoc/cmd/volcli-doc -o docs/volcli.md
