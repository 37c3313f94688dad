package deploy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/volplugin/volplugin/config"
	"github.com/volplugin/volplugin/csi"
)

// manifests are deploy/kubernetes/*.yaml decoded, by kind.
type manifests struct {
	namespaces   []corev1.Namespace
	configMaps   []corev1.ConfigMap
	accounts     []corev1.ServiceAccount
	drivers      []storagev1.CSIDriver
	classes      []storagev1.StorageClass
	snapClasses  []snapshotv1.VolumeSnapshotClass
	roles        []rbacv1.ClusterRole
	bindings     []rbacv1.ClusterRoleBinding
	nsRoles      []rbacv1.Role
	nsBindings   []rbacv1.RoleBinding
	deployments  []appsv1.Deployment
	daemonSets   []appsv1.DaemonSet
	roleNames    map[string]bool
	accountNames map[string]bool
}

// decodeStrict decodes one document onto list, refusing unknown and
// duplicate fields and fields spelled in another case (the API server's own
// strict decoding; encoding/json alone would take "reclaimpolicy").
func decodeStrict[T any](t *testing.T, where string, doc []byte, list *[]T) {
	t.Helper()
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	var v T
	strict, err := sigsjson.UnmarshalStrict(j, &v, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if len(strict) > 0 {
		t.Fatalf("%s: %v", where, errors.Join(strict...))
	}
	*list = append(*list, v)
}

func readManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes: %v", err)
	}
	m := &manifests{roleNames: map[string]bool{}, accountNames: map[string]bool{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			where := f + " " + head.Kind
			want := map[string]string{
				"Namespace": "v1", "ConfigMap": "v1", "ServiceAccount": "v1",
				"CSIDriver": "storage.k8s.io/v1", "StorageClass": "storage.k8s.io/v1",
				"ClusterRole": "rbac.authorization.k8s.io/v1", "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
				"Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1",
				"Deployment": "apps/v1", "DaemonSet": "apps/v1",
				"VolumeSnapshotClass": "snapshot.storage.k8s.io/v1",
			}[head.Kind]
			if want == "" || head.APIVersion != want {
				t.Fatalf("%s #%d: %s %s is not a kind this test knows (apiVersion %s)", f, i, head.APIVersion, head.Kind, want)
			}
			d := []byte(doc)
			switch head.Kind {
			case "Namespace":
				decodeStrict(t, where, d, &m.namespaces)
			case "ConfigMap":
				decodeStrict(t, where, d, &m.configMaps)
			case "ServiceAccount":
				decodeStrict(t, where, d, &m.accounts)
				m.accountNames[m.accounts[len(m.accounts)-1].Name] = true
			case "CSIDriver":
				decodeStrict(t, where, d, &m.drivers)
			case "StorageClass":
				decodeStrict(t, where, d, &m.classes)
			case "VolumeSnapshotClass":
				decodeStrict(t, where, d, &m.snapClasses)
			case "ClusterRole":
				decodeStrict(t, where, d, &m.roles)
				m.roleNames["ClusterRole/"+m.roles[len(m.roles)-1].Name] = true
			case "ClusterRoleBinding":
				decodeStrict(t, where, d, &m.bindings)
			case "Role":
				decodeStrict(t, where, d, &m.nsRoles)
				m.roleNames["Role/"+m.nsRoles[len(m.nsRoles)-1].Name] = true
			case "RoleBinding":
				decodeStrict(t, where, d, &m.nsBindings)
			case "Deployment":
				decodeStrict(t, where, d, &m.deployments)
			case "DaemonSet":
				decodeStrict(t, where, d, &m.daemonSets)
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var out bytes.Buffer
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out.WriteString(l + "\n")
		}
	}
	return out.String()
}

// volcsiFlags are the flags cmd/volcsi defines.
func volcsiFlags(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../cmd/volcsi/main.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`cli\.\w+Flag\{Name: "([a-z0-9-]+)"`).FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	if len(out) == 0 {
		t.Fatal("no flags found in cmd/volcsi/main.go")
	}
	return out
}

// TestKubernetesManifests decodes every manifest strictly and checks that
// they fit volcsi and each other.
func TestKubernetesManifests(t *testing.T) {
	m := readManifests(t)
	if len(m.drivers) != 1 || m.drivers[0].Name != csi.DefaultDriverName {
		t.Fatalf("want one CSIDriver named %s, have %d", csi.DefaultDriverName, len(m.drivers))
	}
	// volcsi has no ControllerPublishVolume: the lock is taken at stage.
	if a := m.drivers[0].Spec.AttachRequired; a == nil || *a {
		t.Error("CSIDriver must say attachRequired: false (volcsi has no attach step)")
	}
	if len(m.classes) == 0 {
		t.Fatal("no StorageClass")
	}
	options := map[string]bool{csi.ParamPolicy: true}
	for _, o := range config.VolumeOptions() {
		options[o] = true
	}
	for _, sc := range m.classes {
		if sc.Provisioner != csi.DefaultDriverName {
			t.Errorf("StorageClass %s: provisioner %s, want %s", sc.Name, sc.Provisioner, csi.DefaultDriverName)
		}
		if sc.Parameters[csi.ParamPolicy] == "" {
			t.Errorf("StorageClass %s has no policy parameter", sc.Name)
		}
		for k := range sc.Parameters {
			if !options[k] && !strings.HasPrefix(k, "csi.storage.k8s.io/") {
				t.Errorf("StorageClass %s: parameter %s is neither policy nor a volume option", sc.Name, k)
			}
		}
	}
	// volcsi takes snapshots: a class for them, and the sidecar that
	// calls it.
	if len(m.snapClasses) != 1 || m.snapClasses[0].Driver != csi.DefaultDriverName {
		t.Errorf("want one VolumeSnapshotClass for %s, have %+v", csi.DefaultDriverName, m.snapClasses)
	}
	sidecarImages := map[string]bool{}
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			sidecarImages[strings.Split(c.Image[strings.LastIndex(c.Image, "/")+1:], ":")[0]] = true
		}
	}
	for _, want := range []string{"csi-provisioner", "csi-resizer", "csi-snapshotter"} {
		if !sidecarImages[want] {
			t.Errorf("the controller Deployment has no %s sidecar", want)
		}
	}
	// volcsi advertises VOLUME_ACCESSIBILITY_CONSTRAINTS: the provisioner
	// must pass topology requirements on and honour the volumes' topology,
	// which its Topology gate (off by default) turns on.
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			if strings.Contains(c.Image, "/csi-provisioner:") && !slices.Contains(c.Args, "--feature-gates=Topology=true") {
				t.Errorf("Deployment %s: csi-provisioner without --feature-gates=Topology=true", d.Name)
			}
		}
	}
	for _, b := range m.bindings {
		checkBinding(t, m, "ClusterRoleBinding "+b.Name, b.RoleRef, b.Subjects)
	}
	for _, b := range m.nsBindings {
		checkBinding(t, m, "RoleBinding "+b.Name, b.RoleRef, b.Subjects)
	}

	flags := volcsiFlags(t)
	modes := map[string]string{}
	check := func(kind, name string, spec corev1.PodSpec) {
		if !m.accountNames[spec.ServiceAccountName] {
			t.Errorf("%s %s: service account %q is not in the manifests", kind, name, spec.ServiceAccountName)
		}
		var socket string
		for _, c := range spec.Containers {
			if c.Name != "volcsi" {
				continue
			}
			for _, a := range c.Args {
				k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !strings.HasPrefix(a, "--") || !flags[k] {
					t.Errorf("%s %s: volcsi argument %q is not a volcsi flag", kind, name, a)
				}
				switch k {
				case "mode":
					modes[kind] = v
				case "endpoint":
					socket = strings.TrimPrefix(v, "unix://")
				}
			}
		}
		if socket == "" {
			t.Fatalf("%s %s: no volcsi container with --endpoint", kind, name)
		}
		sidecars := 0
		for _, c := range spec.Containers {
			for _, a := range c.Args {
				if addr, ok := strings.CutPrefix(a, "--csi-address="); ok {
					sidecars++
					if addr != socket {
						t.Errorf("%s %s: sidecar %s talks to %s, volcsi serves %s", kind, name, c.Name, addr, socket)
					}
				}
			}
		}
		if sidecars == 0 {
			t.Errorf("%s %s: no sidecar", kind, name)
		}
	}
	for _, d := range m.deployments {
		check("Deployment", d.Name, d.Spec.Template.Spec)
	}
	for _, d := range m.daemonSets {
		check("DaemonSet", d.Name, d.Spec.Template.Spec)
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name != "volcsi" {
				continue
			}
			if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
				t.Errorf("DaemonSet %s: volcsi must be privileged to map and mount", d.Name)
			}
			bidi := 0
			for _, vm := range c.VolumeMounts {
				if vm.MountPropagation != nil && *vm.MountPropagation == corev1.MountPropagationBidirectional {
					bidi++
				}
			}
			if bidi < 2 {
				t.Errorf("DaemonSet %s: the kubelet dir and the mount root must both be Bidirectional, %d are", d.Name, bidi)
			}
		}
	}
	if modes["Deployment"] != "controller" || modes["DaemonSet"] != "node" {
		t.Errorf("modes %v: want the Deployment --mode=controller and the DaemonSet --mode=node", modes)
	}
}

func checkBinding(t *testing.T, m *manifests, what string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
	t.Helper()
	if !m.roleNames[ref.Kind+"/"+ref.Name] {
		t.Errorf("%s: %s %s is not in the manifests", what, ref.Kind, ref.Name)
	}
	for _, s := range subjects {
		if s.Kind == "ServiceAccount" && !m.accountNames[s.Name] {
			t.Errorf("%s: service account %s is not in the manifests", what, s.Name)
		}
	}
	if !slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" }) {
		t.Errorf("%s binds no service account", what)
	}
}
