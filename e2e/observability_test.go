package e2e

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// definedMetrics greps the metric names the code defines ("peergate_..." string literals in
// non-test Go files), with the series a histogram adds.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(peergate_[a-z0-9_]+)"`)
	out := map[string]bool{"up": true} // Prometheus's own, per scrape target
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
			if strings.HasSuffix(m[1], "_seconds") {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					out[m[1]+s] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !out["peergate_gateway_redirects_total"] || !out["peergate_origin_clients"] {
		t.Fatalf("the grep found no metric definitions: %v", out)
	}
	return out
}

// gatewayOutcomes reads gwmetrics' outcome constants (the outcome label's values).
func gatewayOutcomes(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../gateway/gwmetrics/gwmetrics.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+[A-Z]\w*\s+= "([a-z_]+)"`).FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	if !out["unavailable"] || !out["ok"] {
		t.Fatalf("no outcome constants found in gwmetrics.go: %v", out)
	}
	return out
}

// checkExpr reports metric names and outcome values in a PromQL expression the code does not define.
func checkExpr(t *testing.T, where, expr string, metrics, outcomes map[string]bool) {
	t.Helper()
	// {__name__=~"a_(b|c)_d"}: every alternative must be a metric.
	nameRe := regexp.MustCompile(`__name__=~"([^"]+)"`)
	for _, m := range nameRe.FindAllStringSubmatch(expr, -1) {
		re := regexp.MustCompile("^(?:" + m[1] + ")$")
		n := 0
		for name := range metrics {
			if re.MatchString(name) {
				n++
			}
		}
		if want := strings.Count(m[1], "|") + 1; n != want {
			t.Errorf("%s: __name__=~%q matches %d defined metrics, want %d", where, m[1], n, want)
		}
	}
	rest := nameRe.ReplaceAllString(expr, "")
	used := regexp.MustCompile(`\bpeergate_[a-z0-9_]+\b`).FindAllString(rest, -1)
	if len(used) == 0 && !strings.Contains(expr, "__name__") && !strings.Contains(expr, "up{") {
		t.Errorf("%s: no peergate metric in %q", where, expr)
	}
	for _, name := range used {
		if !metrics[name] {
			t.Errorf("%s: metric %s is not defined in the code", where, name)
		}
	}
	for _, m := range regexp.MustCompile(`outcome=~?"([^"]+)"`).FindAllStringSubmatch(expr, -1) {
		for _, o := range strings.Split(m[1], "|") {
			if !outcomes[o] {
				t.Errorf("%s: outcome %q is not a gwmetrics outcome", where, o)
			}
		}
	}
}

// TestObservabilityUsesRealMetrics: every metric and outcome the alert rules and the Grafana
// dashboard use is one the code defines; promtool accepts the rules where it is installed.
func TestObservabilityUsesRealMetrics(t *testing.T) {
	t.Parallel()
	metrics, outcomes := definedMetrics(t), gatewayOutcomes(t)

	b, err := os.ReadFile("../deploy/observability/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			checkExpr(t, "alert "+r.Alert, r.Expr, metrics, outcomes)
		}
	}
	for _, want := range []string{"PeergateOriginDown", "PeergateRegistryStale", "PeergateRedirectErrors", "PeergateSignatureFailures", "PeergateRelaySaturation"} {
		if !alerts[want] {
			t.Errorf("alerts.yaml has no %s", want)
		}
	}

	b, err = os.ReadFile("../deploy/observability/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	usedByDash := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr, metrics, outcomes)
			for _, n := range regexp.MustCompile(`\bpeergate_[a-z0-9_]+\b`).FindAllString(tg.Expr, -1) {
				usedByDash[strings.TrimSuffix(n, "_bucket")] = true
			}
		}
	}
	// The dashboard shows every gateway and origin series (registry counters included).
	var missing []string
	for name := range metrics {
		if strings.HasPrefix(name, "peergate_") && !strings.HasSuffix(name, "_bucket") && !strings.HasSuffix(name, "_sum") &&
			!strings.HasSuffix(name, "_count") && !usedByDash[name] && !strings.Contains(name, "_test_") && name != "peergate_log_dropped_total" {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Logf("metrics not on the dashboard: %v", missing)
	}

	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, "check", "rules", "../deploy/observability/alerts.yaml").CombinedOutput(); err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed (apt-get install prometheus): rule syntax not checked")
	}
}
