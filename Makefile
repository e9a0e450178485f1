# Top-level entry points. See README.md.
#   make boot    build everything and boot the default guest (in the nested lane where /dev/kvm is emulated)
#   make test    vet, unit tests, fuzz seeds, short fuzzing and the real-guest tests
#   make images  guest kernel, initramfs and disks into images/out/
#   make bench   boot-time and exit-count comparison against QEMU (see docs/benchmarks.md)

GO      ?= go
GOFLAGS ?=
# Static binaries without cgo: bin/vmm then maps no libc or ld.so (about
# 1.4 MiB less resident per VM, docs/benchmarks.md "Memory"), and runs in the
# nested lane's busybox test host. Everything that builds vmm for tests or
# benchmarks (tests/guest, scripts/bench, scripts/bench-net) does the same.
export CGO_ENABLED ?= 0
# The VMM's Go heap is small (about 1 MiB). Where transparent huge pages are
# "always" (Debian's default, and the nested lane's test host), the runtime's
# first heap mapping is backed by 2 MiB pages and 2 to 4 MiB are resident
# (smaps AnonHugePages; docs/benchmarks.md "Memory"). The runtime's
# disablethp=1 keeps the heap on 4 KiB pages from its first mapping on; it is
# a GODEBUG setting that //go:debug does not accept, so it is set here the
# way cmd/go sets //go:debug defaults (GODEBUG in the environment still
# overrides it). Guest RAM is mapped by memory/, not the Go heap, and keeps
# its huge pages.
VMM_LDFLAGS ?= -X=runtime.godebugDefault=disablethp=1
# urfave_cli_no_docs leaves out urfave/cli's man-page and Markdown
# generators (and the blackfriday Markdown library they pull in), which vmm
# never uses: about 0.2 MiB less resident. Add vmmprofile for a binary whose
# hidden --cpu-profile flag works (it links runtime/pprof, about 0.35 MiB).
VMM_TAGS ?= urfave_cli_no_docs

GO_SOURCES := $(shell find . -name '*.go' -not -path './images/out/*') go.mod go.sum

.PHONY: all build images boot test unit guest-test fuzz vet bench trace-exits clean

all: build

build: bin/vmm bin/vmm-usernet

bin/vmm: $(GO_SOURCES) Makefile
	$(GO) build $(GOFLAGS) -tags '$(VMM_TAGS)' -ldflags='$(VMM_LDFLAGS)' -o $@ ./cmd/vmm

# The user-mode network (--net user) runs in its own process, so that
# gVisor's netstack is neither in the VMM's address space nor in its memory;
# vmm finds it next to itself.
bin/vmm-usernet: $(GO_SOURCES) Makefile
	$(GO) build $(GOFLAGS) -ldflags='$(VMM_LDFLAGS)' -o $@ ./cmd/vmm-usernet

images:
	images/build --install-deps

boot: build images
	scripts/boot-default

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# Unit tests and fuzz seed corpora run everywhere; the guest tests boot real
# kernels (directly on hardware KVM, otherwise in the nested lane).
unit:
	$(GO) test $(GOFLAGS) -count=1 $$($(GO) list ./... | grep -v /tests/guest)

guest-test: images
	$(GO) test $(GOFLAGS) -count=1 -timeout 55m -v ./tests/guest

fuzz:
	scripts/fuzz-short 10s

test: vet unit fuzz guest-test

bench: build images
	scripts/bench

trace-exits: build images
	scripts/trace-exits

clean:
	rm -rf bin
