package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit, with the
// binary path pointed at an executable that exists here (verify checks it),
// and fails on any complaint, warnings included: systemd ignores unknown or
// misspelt settings with only a warning, which would silently drop a
// hardening option.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install -y systemd): the unit is not verified")
	}
	unit, err := os.ReadFile("systemd/postern.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "postern.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/postern"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The exposure score, where this systemd can compute it offline
	// (systemd 250 and later). Lower is better; 10 is no sandbox at all.
	out, err = exec.Command(analyze, "security", "--offline=true", path).CombinedOutput()
	if err != nil {
		t.Logf("systemd-analyze security --offline unavailable: %v", err)
		return
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	if score > 2.5 {
		t.Errorf("exposure level %.1f, want at most 2.5: a hardening setting was lost\n%s", score, out)
	}
}

// TestSystemdUnitSettings checks the settings the issue asks for are there,
// whether or not systemd is installed.
func TestSystemdUnitSettings(t *testing.T) {
	unit, err := os.ReadFile("systemd/postern.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"ProtectSystem=strict",
		"NoNewPrivileges=yes",
		"User=postern",
		"ExecStart=/usr/local/bin/postern serve --config /etc/postern/config.toml",
		"ExecReload=/bin/kill -HUP $MAINPID",
	} {
		if !hasLine(unit, want) {
			t.Errorf("postern.service lacks %q", want)
		}
	}
	users, err := os.ReadFile("systemd/postern.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(users, []byte("u postern ")) {
		t.Error("postern.sysusers does not create the postern user")
	}
}

func hasLine(text []byte, line string) bool {
	for l := range strings.Lines(string(text)) {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

// TestDockerfile checks the image is built in stages, statically, and runs
// the server as a non-root user. (No Docker engine here to build it.)
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var lastUser, entrypoint string
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			lastUser = f[1]
		case "ENTRYPOINT":
			entrypoint = strings.TrimSpace(strings.TrimPrefix(l, f[0]))
		}
	}
	if len(froms) < 2 {
		t.Errorf("%d FROM lines, want a multi-stage build", len(froms))
	}
	if final := froms[len(froms)-1]; !strings.Contains(final, "static") && final != "scratch" {
		t.Errorf("final stage %q is not a static base image", final)
	}
	if !bytes.Contains(b, []byte("CGO_ENABLED=0")) || !bytes.Contains(b, []byte("./cmd/postern")) {
		t.Error("the binary is not built with CGO_ENABLED=0 from ./cmd/postern")
	}
	if lastUser == "" || lastUser == "root" || strings.HasPrefix(lastUser, "0") {
		t.Errorf("final USER %q, want a non-root user", lastUser)
	}
	if !strings.Contains(entrypoint, "/usr/local/bin/postern") {
		t.Errorf("ENTRYPOINT %q does not run postern", entrypoint)
	}
	if _, err := os.Stat("../cmd/postern"); err != nil {
		t.Errorf("the Dockerfile builds ../cmd/postern: %v", err)
	}
}

// TestKubernetesManifests decodes every document and checks the DaemonSet:
// host networking, probes on the admin listener, a config that loads.
func TestKubernetesManifests(t *testing.T) {
	f, err := os.Open("kubernetes/postern.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	kinds := map[string]map[string]any{}
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("kubernetes/postern.yaml: %v", err)
		}
		kind, _ := doc["kind"].(string)
		kinds[kind] = doc
	}
	ds := kinds["DaemonSet"]
	if ds == nil || kinds["Secret"] == nil || kinds["ConfigMap"] == nil || kinds["Namespace"] == nil {
		t.Fatalf("want a Namespace, a Secret, a ConfigMap and a DaemonSet, got %v", keys(kinds))
	}
	spec := dig(t, ds, "spec", "template", "spec")
	if spec["hostNetwork"] != true {
		t.Error("the DaemonSet does not use hostNetwork")
	}
	if spec["dnsPolicy"] != "ClusterFirstWithHostNet" {
		t.Errorf("dnsPolicy %v, want ClusterFirstWithHostNet with hostNetwork", spec["dnsPolicy"])
	}
	containers, _ := spec["containers"].([]any)
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	c := containers[0].(map[string]any)
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := dig(t, c, probe, "httpGet")["path"]; got != path {
			t.Errorf("%s path %v, want %s", probe, got, path)
		}
	}
	args, _ := c["args"].([]any)
	joined := ""
	for _, a := range args {
		joined += a.(string) + " "
	}
	if !strings.Contains(joined, "serve") || !strings.Contains(joined, "--admin=$(HOST_IP):9641") {
		t.Errorf("container args %q, want serve with the admin listener on the node's address", joined)
	}
	caps := dig(t, c, "securityContext", "capabilities")
	if add, _ := caps["add"].([]any); len(add) != 1 || add[0] != "NET_BIND_SERVICE" {
		t.Errorf("added capabilities %v, want only NET_BIND_SERVICE", caps["add"])
	}
	if cfg, _ := dig(t, kinds["ConfigMap"], "data")["config.toml"].(string); !strings.Contains(cfg, `external_ip = "auto"`) {
		t.Errorf("the config lacks external_ip = \"auto\":\n%s", cfg)
	}
	if tok, _ := dig(t, kinds["Secret"], "stringData")["admin-token"].(string); tok == "" {
		t.Error("the Secret holds no admin token")
	}
}

func dig(t *testing.T, m map[string]any, path ...string) map[string]any {
	t.Helper()
	for _, p := range path {
		next, ok := m[p].(map[string]any)
		if !ok {
			t.Fatalf("no %s in %v", strings.Join(path, "."), keys(m))
		}
		m = next
	}
	return m
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestPrometheusFiles decodes the scrape job and the alerting rules.
func TestPrometheusFiles(t *testing.T) {
	for _, name := range []string{"prometheus/scrape.yml", "prometheus/alerts.yml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if len(doc) == 0 {
			t.Errorf("%s is empty", name)
		}
	}
}
