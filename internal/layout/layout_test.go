package layout

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/peergate/peergate/"

// listDeps maps every package of the module (tests excluded: the rules are about what ships)
// to its direct imports and to every package it depends on.
func listDeps(t *testing.T) (imports, deps map[string][]string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", mod+"...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	imports, deps = map[string][]string{}, map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		if len(parts) != 3 {
			t.Fatalf("go list line %q", sc.Text())
		}
		imports[parts[0]] = strings.Fields(parts[1])
		deps[parts[0]] = strings.Fields(parts[2])
	}
	if len(imports) < 10 {
		t.Fatalf("go list found only %d packages", len(imports))
	}
	return imports, deps
}

func under(pkg, dir string) bool {
	return pkg == mod+dir || strings.HasPrefix(pkg, mod+dir+"/")
}

const goRedis = "github.com/redis/go-redis/"

func TestImportRules(t *testing.T) {
	imports, deps := listDeps(t)
	pkgs := make([]string, 0, len(imports))
	for p := range imports {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)

	listeners := []string{"gateway/httpgw", "gateway/rtspgw", "gateway/rtmpgw", "origin/httpsrv", "origin/rtspsrv", "origin/rtmpsrv"}
	for _, p := range pkgs {
		for _, d := range deps[p] {
			switch {
			case under(p, "gateway") && under(d, "origin"), under(p, "origin") && under(d, "gateway"):
				t.Errorf("%s depends on %s: gateway and origin never import each other", p, d)
			case under(p, "shared") && (under(d, "gateway") || under(d, "origin")):
				t.Errorf("%s depends on %s: shared imports neither binary", p, d)
			}
		}
		for _, d := range imports[p] {
			if strings.HasPrefix(d, goRedis) && p != mod+"shared/registry" && !under(p, "internal/redistest") {
				t.Errorf("%s imports %s: only shared/registry talks to Redis", p, d)
			}
		}
	}
	for _, p := range append([]string{"gateway/resolve"}, listeners...) {
		if _, ok := imports[mod+p]; !ok {
			continue // gateway/rtmpgw before it exists
		}
		for _, d := range deps[mod+p] {
			if strings.HasPrefix(d, goRedis) {
				t.Errorf("%s depends on go-redis (through its imports): listeners and the resolver build without the store", p)
				break
			}
		}
		for _, d := range deps[mod+p] {
			if d == mod+"shared/config" {
				t.Errorf("%s depends on shared/config: protocol packages get settings as fields, main wires them", p)
			}
		}
	}
	// Announcing streams to the registry is origin/announce's alone, through interfaces it
	// declares: neither it nor the on-demand pulls depend on the store or on each other.
	for _, p := range []string{"origin/announce", "origin/ondemand"} {
		for _, d := range deps[mod+p] {
			if d == mod+"shared/registry" || d == mod+"origin/announce" || d == mod+"origin/ondemand" {
				t.Errorf("%s depends on %s: announce reaches the registrar and the on-demand manager only through interfaces it declares, and ondemand knows neither", p, d)
			}
		}
	}
	for _, d := range imports[mod+"origin/ondemand"] {
		for _, l := range listeners {
			if d == mod+l {
				t.Errorf("origin/ondemand imports the listener %s: shared ingest code lives in origin/ingest", l)
			}
		}
	}
}
