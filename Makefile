# peergate: `make build`, `make test` (what CI runs), `make demo`, `make bench`, `make bench-http`, `make lint`, `make fuzz`.
GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 10s
# The checksum database refuses gohlslib's versions (design.md section 6); go.sum pins them.
export GONOSUMDB ?= github.com/bluenviron/gohlslib

.PHONY: all build test tools bench bench-http lint fuzz demo test-compose clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/gateway ./gateway
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/origin ./origin

# Tests use real redis-server, redis-sentinel and ffmpeg processes: .ci/tools finds them,
# installs them when root, or fails printing the apt-get command.
test: tools
	$(GO) test -race -count=1 -timeout 30m ./...

tools:
	@bash .ci/tools

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Redirects at line rate: the gateway (100,000 streams in a private redis-server, logging as
# make demo does) against nginx `return 302` and bare net/http, with wrk; a few minutes.
# BENCH_ARGS="-large 1000000" adds a gateway on 1,000,000 streams (100 origins, its own
# redis-server) to the same rounds. The registry's cold start alone, in-process:
# go test -run '^$$' -bench ColdStart -benchtime 1x ./shared/registry/ (also under make bench).
# Never part of make test.
bench-http:
	deploy/bench/run.sh $(BENCH_ARGS)

lint:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Runs every fuzz target briefly (FUZZTIME each); go test -fuzz takes one target at a time.
fuzz:
	@set -e; for dir in $$(grep -rl --exclude-dir=.git --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -d' ' -f2); do \
			echo "== $$dir $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

# A local cluster without Docker: redis-server, 2 origins and 1 gateway on the design ports.
demo: build
	deploy/demo/run.sh

# The docker-compose.yml topology for real: build, up, health, every protocol through both
# gateways with ffprobe, down -v. Needs Docker; not part of CI.
test-compose:
	deploy/test-compose.sh

clean:
	rm -rf $(BIN)
