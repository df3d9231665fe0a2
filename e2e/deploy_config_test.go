package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/peergate/peergate/shared/admin"
	"github.com/peergate/peergate/shared/config"
)

// The deployment files (docker-compose.yml, deploy/k8s) checked against the code: every
// PEERGATE_* variable is a key the binary knows, every config file loads, the ports a binary
// listens on are the ones published and advertised, probes and health checks hit endpoints the
// admin listener serves, commands name binaries that exist.

// composeFile is the part of docker-compose.yml these checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Profiles    []string          `yaml:"profiles"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
	Target     string `yaml:"target"`
}

// interpolate resolves compose's ${VAR:-default} and ${VAR} the way an empty environment would.
func interpolate(s string) string {
	s = regexp.MustCompile(`\$\{[A-Za-z0-9_]+:-([^}]*)\}`).ReplaceAllString(s, "$1")
	s = regexp.MustCompile(`\$\{[A-Za-z0-9_]+\}`).ReplaceAllString(s, "")
	return strings.ReplaceAll(s, "$$", "$")
}

// binaryOf says which binary a peergate image runs ("" for other images).
func binaryOf(image string) string {
	switch {
	case strings.Contains(image, "peergate-gateway"):
		return "gateway"
	case strings.Contains(image, "peergate-origin"):
		return "origin"
	}
	return ""
}

// loaded is a binary's effective config: listen ports and advertised public URLs.
type loaded struct {
	listen  map[string]string // http, rtsp, rtmp, admin -> address
	public  map[string]string // http, rtsp, rtmp -> URL
	streams map[string]string // name -> source
}

func loadConfig(t *testing.T, binary, file string, env []string) loaded {
	t.Helper()
	// The cluster key comes from a Secret or the compose environment; a stand-in keeps Validate happy.
	env = append([]string{"PEERGATE_CLUSTER_KEY=deploy-config-test-key-0123456789"}, env...)
	switch binary {
	case "gateway":
		c, err := config.LoadGateway(file, env)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return loaded{listen: map[string]string{"http": c.Listen.HTTP, "rtsp": c.Listen.RTSP, "rtmp": c.Listen.RTMP, "admin": c.Listen.Admin}}
	case "origin":
		c, err := config.LoadOrigin(file, env)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		l := loaded{
			listen:  map[string]string{"http": c.Listen.HTTP, "rtsp": c.Listen.RTSP, "rtmp": c.Listen.RTMP, "admin": c.Listen.Admin},
			public:  map[string]string{"http": c.Public.HTTP, "rtsp": c.Public.RTSP, "rtmp": c.Public.RTMP},
			streams: map[string]string{},
		}
		for _, s := range c.Streams {
			l.streams[s.Name] = s.Source
		}
		return l
	}
	t.Fatalf("unknown binary %q", binary)
	return loaded{}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func urlPort(t *testing.T, raw string) int {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Port() == "" {
		t.Fatalf("public URL %q has no explicit port (%v)", raw, err)
	}
	n, _ := strconv.Atoi(u.Port())
	return n
}

// adminPaths are the GET paths the admin listener answers (not 404), asked of a real one.
func adminServes(t *testing.T, paths ...string) {
	t.Helper()
	srv := &admin.Server{Address: "127.0.0.1:0"}
	if err := srv.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, p := range paths {
		res, err := http.Get("http://" + srv.Addr().String() + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("a probe GETs %s on the admin listener, which answers %d", p, res.StatusCode)
		}
	}
}

// dockerfileTargets reads deploy/Dockerfile's final stages: target -> ENTRYPOINT binary and HEALTHCHECK command.
func dockerfileTargets(t *testing.T) map[string][2]string {
	t.Helper()
	b, err := os.ReadFile("../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	out := map[string][2]string{}
	stage := ""
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			stage = ""
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				stage = f[3]
			}
		case "ENTRYPOINT":
			e := out[stage]
			e[0] = strings.Trim(strings.Join(f[1:], ""), `[]"`)
			out[stage] = e
		case "HEALTHCHECK":
			i := slices.Index(f, "CMD")
			if i < 0 {
				t.Fatalf("Dockerfile stage %s: HEALTHCHECK without CMD: %s", stage, line)
			}
			e := out[stage]
			e[1] = strings.Join(f[i+1:], " ")
			out[stage] = e
		}
	}
	return out
}

func TestComposeMatchesConfig(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	targets := dockerfileTargets(t)
	for _, bin := range []string{"gateway", "origin"} {
		e := targets[bin]
		if e[0] != "/usr/local/bin/"+bin {
			t.Errorf("Dockerfile target %s: ENTRYPOINT %q, want /usr/local/bin/%s", bin, e[0], bin)
		}
		if !strings.Contains(e[1], `"/usr/local/bin/`+bin+`", "healthcheck"`) {
			t.Errorf("Dockerfile target %s: HEALTHCHECK %q does not run `%s healthcheck`", bin, e[1], bin)
		}
	}

	gwEnv, orEnv := config.EnvNames(&config.Gateway{}), config.EnvNames(&config.Origin{})
	hostPorts := map[string]string{} // "host-ip:port" -> service
	configs := map[string]loaded{}   // service -> effective config
	peergate := 0
	var probed []string
	for name, svc := range cf.Services {
		if svc.Healthcheck == nil || len(svc.Healthcheck.Test) == 0 {
			t.Errorf("service %s has no healthcheck", name)
		}
		for _, p := range svc.Ports {
			host, _, _ := strings.Cut(p, ":")
			if strings.Count(p, ":") == 1 {
				host = "0.0.0.0:" + host
			} else {
				host = p[:strings.LastIndex(p, ":")]
			}
			if prev, dup := hostPorts[host]; dup {
				t.Errorf("host port %s published by both %s and %s", host, prev, name)
			}
			hostPorts[host] = name
		}
		bin := binaryOf(svc.Image)
		if bin == "" {
			continue
		}
		peergate++
		if svc.Build != nil {
			if svc.Build.Target != bin {
				t.Errorf("service %s: image %s built from target %q, want %q", name, svc.Image, svc.Build.Target, bin)
			}
			if _, err := os.Stat(filepath.Join("..", svc.Build.Context, svc.Build.Dockerfile)); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		}
		known := gwEnv
		if bin == "origin" {
			known = orEnv
		}
		var env []string
		for k, v := range svc.Environment {
			if _, ok := known[k]; !ok {
				t.Errorf("service %s (%s): %s is not a config key of the %s", name, bin, k, bin)
			}
			env = append(env, k+"="+interpolate(v))
		}
		// The command is the image's ENTRYPOINT's arguments: -config FILE, FILE mounted from the repo.
		if len(svc.Command) != 2 || svc.Command[0] != "-config" {
			t.Fatalf("service %s: command %q, want [-config FILE]", name, svc.Command)
		}
		file := hostPath(t, name, svc.Volumes, svc.Command[1])
		cfg := loadConfig(t, bin, file, env)
		configs[name] = cfg

		// Health check: the image's binary, the same config file.
		wantHC := []string{"CMD", "/usr/local/bin/" + bin, "healthcheck", "-config", svc.Command[1]}
		if !slices.Equal(svc.Healthcheck.Test, wantHC) {
			t.Errorf("service %s: healthcheck %q, want %q", name, svc.Healthcheck.Test, wantHC)
		}
		probed = append(probed, "/readyz")

		// Every listener published (admin on 127.0.0.1 only, the rest on every interface), and
		// nothing published that nobody listens on.
		published := map[int]string{} // container port -> "ip:hostport"
		for _, p := range svc.Ports {
			i := strings.LastIndex(p, ":")
			cp, _ := strconv.Atoi(p[i+1:])
			published[cp] = p[:i]
		}
		listening := map[int]bool{}
		for l, addr := range cfg.listen {
			if addr == "" {
				continue
			}
			port := portOf(t, addr)
			listening[port] = true
			host, ok := published[port]
			switch {
			case !ok:
				t.Errorf("service %s: listen.%s %s is not published", name, l, addr)
			case l == "admin" && !strings.HasPrefix(host, "127.0.0.1:"):
				t.Errorf("service %s: admin port published as %q, want 127.0.0.1 only", name, host)
			case l != "admin" && strings.Contains(host, ":"):
				t.Errorf("service %s: %s port published as %q, want every interface (players reach it)", name, l, host)
			}
			// An origin advertises the host port players reach its listener on.
			if bin == "origin" && l != "admin" && ok {
				pub := cfg.public[l]
				if pub == "" {
					t.Errorf("service %s: no public.%s for listen.%s", name, l, l)
					continue
				}
				hp, _ := strconv.Atoi(host[strings.LastIndex(host, ":")+1:])
				if got := urlPort(t, pub); got != hp {
					t.Errorf("service %s: public.%s %s names port %d, but listen.%s is published on %d", name, l, pub, got, l, hp)
				}
				if u, _ := url.Parse(pub); u.Hostname() != "localhost" {
					t.Errorf("service %s: public.%s %s: host should be PEERGATE_PUBLIC_HOST's default, localhost", name, l, pub)
				}
				if v, ok := svc.Environment["PEERGATE_PUBLIC_"+strings.ToUpper(l)]; !ok || !strings.Contains(v, "${PEERGATE_PUBLIC_HOST:-localhost}") {
					t.Errorf("service %s: PEERGATE_PUBLIC_%s = %q does not take its host from PEERGATE_PUBLIC_HOST", name, strings.ToUpper(l), v)
				}
			}
		}
		for cp := range published {
			if !listening[cp] {
				t.Errorf("service %s publishes container port %d, on which nothing listens", name, cp)
			}
		}
	}
	if peergate < 4 {
		t.Errorf("docker-compose.yml runs %d peergate services, want two origins and two gateways", peergate)
	}

	// A pull source naming a compose service reaches a listener of it that carries the stream.
	for name, cfg := range configs {
		for stream, src := range cfg.streams {
			u, err := url.Parse(src)
			if err != nil || u.Host == "" {
				continue
			}
			up, ok := configs[u.Hostname()]
			if !ok {
				t.Errorf("service %s: stream %s pulls from %s, not a service of this file", name, stream, src)
				continue
			}
			if got := portOf(t, up.listen[u.Scheme]); got != urlPort(t, src) {
				t.Errorf("service %s: stream %s pulls %s, but %s listens for %s on %d", name, stream, src, u.Hostname(), u.Scheme, got)
			}
			if _, ok := up.streams[strings.TrimPrefix(u.Path, "/")]; !ok {
				t.Errorf("service %s: stream %s pulls %s, which %s does not carry", name, stream, src, u.Hostname())
			}
		}
	}
	adminServes(t, probed...)
}

// hostPath maps a path inside a container to the repository file a bind mount puts there.
func hostPath(t *testing.T, service string, volumes []string, inContainer string) string {
	t.Helper()
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		if rel, ok := strings.CutPrefix(inContainer, parts[1]+"/"); ok {
			p := filepath.Join("..", parts[0], rel)
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("service %s: %s comes from %s: %v", service, inContainer, p, err)
			}
			return p
		}
	}
	t.Fatalf("service %s: no volume provides %s", service, inContainer)
	return ""
}

// k8sObject is the part of a Kubernetes manifest these checks read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Selector yaml.Node `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
		ScaleTargetRef struct {
			Kind, Name string
		} `yaml:"scaleTargetRef"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
				Containers                    []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type probeSpec struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *probeSpec `yaml:"readinessProbe"`
	LivenessProbe  *probeSpec `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

func TestKubernetesMatchesConfig(t *testing.T) {
	t.Parallel()
	var kust struct {
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
	}
	b, err := os.ReadFile("../deploy/k8s/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	configFiles := map[string]string{} // ConfigMap key -> repository file
	for _, g := range kust.ConfigMapGenerator {
		for _, f := range g.Files {
			configFiles[path.Base(f)] = filepath.Join("../deploy/k8s", f)
		}
	}
	var objs []k8sObject
	for _, r := range kust.Resources {
		f, err := os.Open(filepath.Join("../deploy/k8s", r))
		if err != nil {
			t.Fatalf("kustomization resource: %v", err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var o k8sObject
			if err := dec.Decode(&o); err != nil {
				if err.Error() != "EOF" {
					t.Fatalf("%s: %v", r, err)
				}
				break
			}
			objs = append(objs, o)
		}
		f.Close()
	}
	secretKeys := map[string]bool{}
	example, err := os.ReadFile("../deploy/k8s/cluster-key.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(example), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			secretKeys[k] = true
		}
	}
	kinds := map[string]bool{}
	podPorts := map[string]map[string]int{} // pod label app.kubernetes.io/name -> port name -> number
	var probed []string
	for _, o := range objs {
		kinds[o.Kind] = true
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
			continue
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			bin := binaryOf(c.Image)
			if bin == "" {
				t.Errorf("%s %s: container %s runs %q, not a peergate image", o.Kind, o.Metadata.Name, c.Name, c.Image)
				continue
			}
			if want := map[string]string{"gateway": "Deployment", "origin": "StatefulSet"}[bin]; o.Kind != want {
				t.Errorf("the %s runs as a %s, want a %s", bin, o.Kind, want)
			}
			known := config.EnvNames(&config.Gateway{})
			if bin == "origin" {
				known = config.EnvNames(&config.Origin{})
			}
			var env []string
			vars := map[string]string{"POD_NAME": bin + "-0", "POD_IP": "10.1.2.3"}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, config.EnvPrefix) {
					if _, ok := known[e.Name]; !ok {
						t.Errorf("%s %s: %s is not a config key of the %s", o.Kind, o.Metadata.Name, e.Name, bin)
					}
				}
				v := regexp.MustCompile(`\$\(([A-Z_]+)\)`).ReplaceAllStringFunc(e.Value, func(m string) string { return vars[m[2:len(m)-1]] })
				if ref := e.ValueFrom.SecretKeyRef; ref != nil {
					// A Secret's value: the key must be one cluster-key.env.example lists; a stand-in value.
					if !secretKeys[ref.Key] {
						t.Errorf("%s %s: %s from Secret key %s, which cluster-key.env.example does not list", o.Kind, o.Metadata.Name, e.Name, ref.Key)
					}
					v = "k8s-secret-stand-in-0123456789abcdef"
					env = append(env, e.Name+"="+v)
				}
				if e.Value != "" {
					vars[e.Name] = v
				}
				if strings.HasPrefix(e.Name, config.EnvPrefix) && e.Value != "" {
					env = append(env, e.Name+"="+v)
				}
			}
			if len(c.Args) != 2 || c.Args[0] != "-config" {
				t.Fatalf("%s %s: args %q, want [-config FILE]", o.Kind, o.Metadata.Name, c.Args)
			}
			file := ""
			for _, m := range c.VolumeMounts {
				if m.MountPath == c.Args[1] {
					file = configFiles[m.SubPath]
				}
			}
			if file == "" {
				t.Fatalf("%s %s: no ConfigMap file mounted at %s", o.Kind, o.Metadata.Name, c.Args[1])
			}
			cfg := loadConfig(t, bin, file, env)
			ports := map[string]int{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			podPorts[o.Spec.Template.Metadata.Labels["app.kubernetes.io/name"]] = ports
			for l, addr := range cfg.listen {
				if addr == "" {
					continue
				}
				if got := portOf(t, addr); ports[l] != got {
					t.Errorf("%s %s: containerPort %q is %d, the config listens on %d", o.Kind, o.Metadata.Name, l, ports[l], got)
				}
			}
			for kind, pr := range map[string]*probeSpec{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if pr == nil || pr.HTTPGet == nil {
					t.Errorf("%s %s: no %s httpGet probe", o.Kind, o.Metadata.Name, kind)
					continue
				}
				want := map[string]string{"readiness": "/readyz", "liveness": "/healthz"}[kind]
				if pr.HTTPGet.Path != want || pr.HTTPGet.Port != "admin" {
					t.Errorf("%s %s: %s probe GETs %v%s, want admin%s", o.Kind, o.Metadata.Name, kind, pr.HTTPGet.Port, pr.HTTPGet.Path, want)
				}
				probed = append(probed, pr.HTTPGet.Path)
			}
			if bin == "origin" {
				// Each pod advertises its own address, at the port it listens on.
				for l, pub := range cfg.public {
					if pub == "" {
						t.Errorf("StatefulSet %s: no public.%s", o.Metadata.Name, l)
						continue
					}
					if u, _ := url.Parse(pub); !strings.HasPrefix(u.Hostname(), "origin-0.") || urlPort(t, pub) != ports[l] {
						t.Errorf("StatefulSet %s: pod origin-0 advertises %s, want its own host name at port %d", o.Metadata.Name, pub, ports[l])
					}
				}
				drain, grace := originDrain(t, file), o.Spec.Template.Spec.TerminationGracePeriodSeconds
				if grace < drain+5 {
					t.Errorf("StatefulSet %s: terminationGracePeriodSeconds %d does not leave drain_timeout (%d s) room", o.Metadata.Name, grace, drain)
				}
			}
		}
	}
	for _, k := range []string{"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} {
		if !kinds[k] {
			t.Errorf("deploy/k8s has no %s", k)
		}
	}
	// Services route to named ports the pods declare.
	for _, o := range objs {
		if o.Kind != "Service" {
			continue
		}
		var sel map[string]string
		if err := o.Spec.Selector.Decode(&sel); err != nil {
			t.Fatalf("Service %s selector: %v", o.Metadata.Name, err)
		}
		ports, ok := podPorts[sel["app.kubernetes.io/name"]]
		if !ok {
			t.Errorf("Service %s selects %v, which no workload here labels", o.Metadata.Name, sel)
			continue
		}
		for _, p := range o.Spec.Ports {
			if tp := fmt.Sprint(p.TargetPort); ports[tp] == 0 {
				t.Errorf("Service %s: targetPort %s is not a port of the pods", o.Metadata.Name, tp)
			} else if ports[tp] != p.Port {
				t.Errorf("Service %s: port %d forwards to %s %d: keep them equal (players see the advertised port)", o.Metadata.Name, p.Port, tp, ports[tp])
			}
		}
	}
	adminServes(t, probed...)
}

func originDrain(t *testing.T, file string) int {
	c, err := config.LoadOrigin(file, []string{"PEERGATE_CLUSTER_KEY=deploy-config-test-key-0123456789", "PEERGATE_AUTH_PUBLISH_SECRET=k8s-secret-stand-in-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	return int(c.DrainTimeout.Seconds())
}
