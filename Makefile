# kioskcert — see README.md. `make demo` and `make test` are the quick start.
SHELL := /bin/bash
GO ?= go
GOFLAGS ?= -trimpath
export GOFLAGS
OUT := out
BIN := bin
# make demo READER=pcsc reads the virtual card through pcscd instead of in process.
READER ?= inprocess
# make demo|run KEYS=softhsm|file: where the demo center's signing keys live.
# auto (the default) uses a SoftHSM2 token when softhsm2-util is installed
# (through bin/pkcs11/issuance-center), key files otherwise; both say which.
KEYS ?= auto

KIOSK_CMDS := $(wildcard kiosk/cmd/*)
CENTER_CMDS := $(wildcard center/cmd/*)
CARD_CMDS := $(wildcard cardreader/cmd/*)

.PHONY: bench-go all deps deps-demo build build-center build-center-pkcs11 build-kiosk build-windows vet-windows test test-pkcs11 lint vet staticcheck bench fuzz demo run clean

all: build

deps:
	@.ci/install-deps test

deps-demo:
	@.ci/install-deps demo

## build: all commands into bin/. The center never needs cgo; the kiosk does
## on Linux (PC/SC through libpcsclite).
build: build-center build-kiosk

build-center:
	@mkdir -p $(BIN)
	$(if $(CENTER_CMDS),CGO_ENABLED=0 $(GO) build -o $(BIN)/ $(addprefix ./,$(CENTER_CMDS)))

## build-center-pkcs11: the center with PKCS#11 key sources (HSMs,
## SoftHSM2) into bin/pkcs11/. Needs cgo: the PKCS#11 module is a C library
## loaded with dlopen. The default center (build-center) has no cgo and
## refuses keySource "pkcs11" with a clear error.
build-center-pkcs11:
	@mkdir -p $(BIN)/pkcs11
	CGO_ENABLED=1 $(GO) build -tags pkcs11 -o $(BIN)/pkcs11/ ./center/cmd/issuance-center

## test-pkcs11: the packages with PKCS#11 code and tests, built with the
## tag, against SoftHSM2 tokens made per test.
PKCS11_PKGS := ./center/internal/keyring/... ./center/internal/app/... ./center/internal/admin/...
test-pkcs11:
	CGO_ENABLED=1 $(GO) test -tags pkcs11 -race -count=1 -timeout 10m $(PKCS11_PKGS)

build-kiosk:
	@mkdir -p $(BIN)
	$(if $(KIOSK_CMDS)$(CARD_CMDS),CGO_ENABLED=1 $(GO) build -o $(BIN)/ $(addprefix ./,$(KIOSK_CMDS) $(CARD_CMDS)))

## build-windows: the kiosk agent and cardcheck for windows/amd64 (store
## terminals run Windows). No cgo: ebfe/scard calls WinSCard directly there.
WINDOWS_CMDS := ./kiosk/cmd/kiosk-agent ./cardreader/cmd/cardcheck
build-windows:
	@mkdir -p $(BIN)/windows-amd64
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) build -o $(BIN)/windows-amd64/ $(WINDOWS_CMDS)

## vet-windows: the kiosk side type-checks for Windows, tests included.
vet-windows:
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) vet ./kiosk/... ./cardreader/...

## test: everything CI runs.
test: deps
	$(GO) mod verify
	$(MAKE) build build-center-pkcs11
	$(MAKE) lint
	CGO_ENABLED=1 $(GO) vet -tags pkcs11 ./center/...
	$(MAKE) build-windows vet-windows
	@# The center must build without cgo and must not import the card reader.
	CGO_ENABLED=0 $(GO) build ./center/... ./pkg/...
	@if $(GO) list -deps ./center/... ./pkg/... | grep -q '^github.com/kioskcert/kioskcert/\(cardreader\|kiosk\)\(/\|$$\)'; then \
		echo "center or pkg imports cardreader or kiosk" >&2; exit 1; fi
	@# Only the bbolt implementations (and the records benchmark) know bbolt;
	@# the production center links no demo resident.
	@bad=$$($(GO) list -f '{{.ImportPath}} {{join .Imports " "}}' ./center/... | grep ' go.etcd.io/bbolt' | cut -d' ' -f1 | \
		grep -v -E '/(store/boltstore|store/boltfile|records/boltrecords|records/recordsbench)$$' || true); \
	if [ -n "$$bad" ]; then echo "bbolt imported outside its implementations: $$bad" >&2; exit 1; fi
	@if $(GO) list -deps ./center/cmd/issuance-center | grep -q '^github.com/kioskcert/kioskcert/assets/demo$$'; then \
		echo "the production issuance-center links the demo residents" >&2; exit 1; fi
	$(GO) test -race -count=1 -timeout 40m ./...
	$(MAKE) test-pkcs11

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...

lint: vet staticcheck

## bench: the national load run, short: 3,000 kiosks connected to the real
## center process from two fleet processes, three offered rates of 15 s
## each, one table (connections, issuances/s, latency percentiles, errors
## by code, the center's CPU per issuance against the cryptographic floor,
## memory per connection). The first run enrolls the kiosks (about half a
## minute) under $(OUT)/bench. Full runs: docs/BENCHMARKS.md.
##
## Then a large ledger import beside issuance: issuance p99 without an
## import and while $(BENCH_IMPORT_PERSONS) persons are imported through
## the operations API (target: within 2×); the ledger is generated once
## under $(OUT)/bench/import.
BENCH_KIOSKS ?= 3000
BENCH_RATES ?= 250,500,1000
BENCH_IMPORT_PERSONS ?= 1000000
bench: build
	bin/loadgen national -dir $(OUT)/bench/national -kiosks $(BENCH_KIOSKS) -fleets 2 -rates $(BENCH_RATES) -duration 15s
	bin/loadgen import -dir $(OUT)/bench/import -kiosks 200 -rate 50 -persons $(BENCH_IMPORT_PERSONS) -baseline 20s

## bench-go: every Go benchmark (hot paths, card, PDF, console pages, PKCS#11).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	CGO_ENABLED=1 $(GO) test -tags pkcs11 -run '^$$' -bench . -benchmem ./center/internal/keyring/pkcs11source/...

## fuzz: run each fuzz target for FUZZTIME.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; done

## demo: the walking skeleton end to end (see README). Leaves out/demo/*.pdf.
demo: deps-demo
	$(MAKE) build build-center-pkcs11
ifeq ($(READER),pcsc)
	@pgrep -x pcscd >/dev/null || pcscd
	bin/kioskcert-demo -out $(OUT)/demo -reader pcsc -keys $(KEYS)
else
	bin/kioskcert-demo -out $(OUT)/demo -reader virtual -keys $(KEYS)
endif

## run: the simulator (bin/kioskcert-sim): a demo center, a virtual card reader
## and the kiosk agent with its touch screen. Open the URL it prints (the panel
## at /sim/ places the demo cards and pays); Ctrl-C stops. Leaves out/sim/.
## SIMFLAGS=-terminal lets bin/example-integrator take the payment and print.
LISTEN ?= 127.0.0.1:8800
SIMFLAGS ?=
run: deps-demo
	$(MAKE) build build-center-pkcs11
	bin/kioskcert-sim -out $(OUT)/sim -listen $(LISTEN) -keys $(KEYS) $(SIMFLAGS)

clean:
	rm -rf $(OUT) $(BIN)
