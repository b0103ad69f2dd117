package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/postern/postern/config"
)

// manifests are the objects of kubernetes/postern.yaml, each decoded
// strictly into its k8s.io/api type.
type manifests struct {
	namespaces  []corev1.Namespace
	secrets     []corev1.Secret
	configMaps  []corev1.ConfigMap
	services    []corev1.Service
	deployments []appsv1.Deployment
	daemonSets  []appsv1.DaemonSet
}

// decodeStrict decodes doc into v as the API server reads an object, and
// refuses a field the type does not have (a misspelt key, a key in the
// wrong case or at the wrong level), a key given twice, or a value of the
// wrong type: sigs.k8s.io/yaml turns YAML into JSON (refusing duplicate
// keys), and sigs.k8s.io/json, the API server's own decoder, decodes it
// into the k8s.io/api type case-sensitively with unknown fields refused
// (encoding/json alone would match "clusterIp" to clusterIP).
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// loadManifests splits the file into documents and decodes each by its
// apiVersion and kind; a kind it does not know is an error.
func loadManifests(t *testing.T, path string) manifests {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m manifests
	for i, doc := range bytes.Split(b, []byte("\n---\n")) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s document %d: %v", path, i+1, err)
		}
		var err error
		switch head.APIVersion + " " + head.Kind {
		case "v1 Namespace":
			m.namespaces, err = appendStrict(m.namespaces, doc)
		case "v1 Secret":
			m.secrets, err = appendStrict(m.secrets, doc)
		case "v1 ConfigMap":
			m.configMaps, err = appendStrict(m.configMaps, doc)
		case "v1 Service":
			m.services, err = appendStrict(m.services, doc)
		case "apps/v1 Deployment":
			m.deployments, err = appendStrict(m.deployments, doc)
		case "apps/v1 DaemonSet":
			m.daemonSets, err = appendStrict(m.daemonSets, doc)
		default:
			err = fmt.Errorf("unexpected %s %s", head.APIVersion, head.Kind)
		}
		if err != nil {
			t.Fatalf("%s document %d (%s): %v", path, i+1, head.Kind, err)
		}
	}
	return m
}

func appendStrict[T any](list []T, doc []byte) ([]T, error) {
	var v T
	if err := decodeStrict(doc, &v); err != nil {
		return list, err
	}
	return append(list, v), nil
}

// TestStrictDecodingCatchesMistakes shows the validator is not a YAML
// parser only: a misspelt field and a wrong type are refused.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIp: None}\n",                                    // clusterIP
		"apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec: {template: {spec: {hostNetwork: yes-please}}}\n", // bool
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 3478, protocl: UDP}]}\n",
	} {
		var v any = &corev1.Service{}
		if strings.Contains(doc, "DaemonSet") {
			v = &appsv1.DaemonSet{}
		}
		if err := decodeStrict([]byte(doc), v); err == nil {
			t.Errorf("accepted:\n%s", doc)
		}
	}
}

// TestKubernetesFleet validates every manifest against the Kubernetes API
// types (k8s.io/api, decoded strictly) and checks what the fleet needs:
// the cluster settings reach every node, the node's name is its pod's,
// Redis and a headless Service for the nodes exist and select what they
// should, readiness is /readyz, and a pod being replaced drains first and
// has the time its drain may take. No cluster is available here: this
// checks the manifests' schema and wiring, not a running fleet.
func TestKubernetesFleet(t *testing.T) {
	m := loadManifests(t, "kubernetes/postern.yaml")
	if len(m.namespaces) != 1 || len(m.daemonSets) != 1 || len(m.deployments) != 1 || len(m.configMaps) != 1 || len(m.secrets) != 1 {
		t.Fatalf("want 1 Namespace, Secret, ConfigMap, DaemonSet and (Redis) Deployment; got %d %d %d %d %d",
			len(m.namespaces), len(m.secrets), len(m.configMaps), len(m.daemonSets), len(m.deployments))
	}
	ns := m.namespaces[0].Name
	for _, meta := range []string{m.secrets[0].Namespace, m.configMaps[0].Namespace, m.daemonSets[0].Namespace, m.deployments[0].Namespace} {
		if meta != ns {
			t.Errorf("an object in namespace %q, want %q", meta, ns)
		}
	}

	// The configuration: [cluster] and [usage] point at the Redis Service.
	raw := m.configMaps[0].Data["config.toml"]
	var doc map[string]any
	if _, err := toml.Decode(raw, &doc); err != nil {
		t.Fatalf("config.toml: %v", err)
	}
	cluster, _ := doc["cluster"].(map[string]any)
	redisURL, _ := cluster["redis"].(string)
	if redisURL == "" || cluster["region"] == nil {
		t.Fatalf("config.toml: [cluster] redis and region are not set:\n%s", raw)
	}
	if u, _ := doc["usage"].(map[string]any); u["redis"] != redisURL {
		t.Errorf("[usage] redis = %v, want the cluster's %s", u["redis"], redisURL)
	}
	declared, err := config.FromTOML(config.Settings(), doc)
	if err == nil {
		_, err = config.Resolve(config.Settings(), declared)
	}
	if err != nil {
		t.Errorf("config.toml: %v", err)
	}
	redisSvc := service(t, m, "redis")
	if want := "redis://" + redisSvc.Name + ":" + fmt.Sprint(redisSvc.Spec.Ports[0].Port); redisURL != want {
		t.Errorf("[cluster] redis = %s, want the Service: %s", redisURL, want)
	}
	redis := m.deployments[0]
	if !selects(redisSvc.Spec.Selector, redis.Spec.Template.Labels) || !selects(redis.Spec.Selector.MatchLabels, redis.Spec.Template.Labels) {
		t.Errorf("the redis Service or Deployment does not select the Redis pods")
	}
	if p := redis.Spec.Template.Spec.Containers[0].Ports; len(p) == 0 || p[0].ContainerPort != redisSvc.Spec.Ports[0].Port {
		t.Errorf("Redis listens on %v, the Service sends to %v", p, redisSvc.Spec.Ports)
	}

	// The nodes: a headless Service over the DaemonSet's pods.
	ds := m.daemonSets[0]
	pod := ds.Spec.Template.Spec
	nodes := service(t, m, "postern-nodes")
	if nodes.Spec.ClusterIP != corev1.ClusterIPNone || nodes.Spec.PublishNotReadyAddresses {
		t.Errorf("postern-nodes: clusterIP %q, publishNotReadyAddresses %v; want a headless Service of ready nodes only",
			nodes.Spec.ClusterIP, nodes.Spec.PublishNotReadyAddresses)
	}
	if !selects(nodes.Spec.Selector, ds.Spec.Template.Labels) {
		t.Error("postern-nodes does not select the DaemonSet's pods")
	}
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Error("the DaemonSet needs hostNetwork with dnsPolicy ClusterFirstWithHostNet (to resolve the redis Service)")
	}

	c := pod.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	// The node's name is its pod's name (the downward API).
	if e := env["POD_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("POD_NAME %+v, want the downward API's metadata.name", e)
	}
	if !slices.Contains(c.Args, "--cluster-node=$(POD_NAME)") {
		t.Errorf("args %q do not name the node after its pod", c.Args)
	}
	// Every $(VAR) in the args is defined.
	for _, a := range c.Args {
		for _, v := range refs(a) {
			if _, ok := env[v]; !ok {
				t.Errorf("arg %q uses $(%s), which is not in env", a, v)
			}
		}
	}
	for name, key := range map[string]string{"POSTERN_ADMIN_TOKEN": "admin-token", "POSTERN_REST_SECRET": "rest-secret"} {
		e := env[name]
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != m.secrets[0].Name ||
			m.secrets[0].StringData[e.ValueFrom.SecretKeyRef.Key] == "" || e.ValueFrom.SecretKeyRef.Key != key {
			t.Errorf("%s %+v: want key %s of the Secret %s", name, e, key, m.secrets[0].Name)
		}
	}
	if env["POSTERN_ADMIN"].Value != "$(HOST_IP):9641" || !slices.Contains(c.Args, "--admin=$(HOST_IP):9641") {
		t.Errorf("POSTERN_ADMIN %q: the drain must reach the admin listener serve binds", env["POSTERN_ADMIN"].Value)
	}

	// Readiness is /readyz on the admin port; preStop drains.
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "admin" {
		t.Errorf("readinessProbe %+v, want GET /readyz on the admin port", p)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
		!slices.Equal(c.Lifecycle.PreStop.Exec.Command, []string{"/usr/local/bin/postern", "drain"}) {
		t.Errorf("preStop %+v, want exec postern drain", c.Lifecycle)
	}
	// The grace period covers the drain's wait, with room for the stop.
	drain := config.Get(config.Settings(), declared, "drain.timeout").(time.Duration)
	if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace < drain+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v, want at least [drain] timeout %v + 10s", grace, drain)
	}
	// The configuration file comes from the ConfigMap.
	if len(pod.Volumes) != 1 || pod.Volumes[0].ConfigMap == nil || pod.Volumes[0].ConfigMap.Name != m.configMaps[0].Name {
		t.Errorf("volumes %+v, want the ConfigMap %s", pod.Volumes, m.configMaps[0].Name)
	}
}

func service(t *testing.T, m manifests, name string) corev1.Service {
	t.Helper()
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return corev1.Service{}
}

// selects reports whether a selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// refs returns the variables $(VAR) in s.
func refs(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			return out
		}
		out = append(out, s[i+2:i+j])
		s = s[i+j:]
	}
}
