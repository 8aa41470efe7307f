// helm-render renders a Helm chart the way `helm template` does, for tests on machines where Helm
// itself cannot be installed. It is built from Debian's Go, sprig and sigs.k8s.io/yaml (GOPATH
// mode, see build.sh) and follows Helm v3's engine: Go text/template with sprig's function map
// (minus env/expandenv), Helm's own functions (include, tpl, toYaml, fromYaml, toJson, fromJson,
// required, fail), values coalesced from values.yaml, -f files and --set, .Release, .Chart,
// .Capabilities, .Template and .Files, partials (_*.tpl) parsed but not rendered, NOTES.txt
// rendered but left out of the output, and documents sorted by kind in Helm's install order with
// "# Source:" headers.
//
// Deliberate differences: `lookup` fails (Helm returns an empty map without a cluster; a chart
// that needs a cluster to render is a bug here), subcharts are not supported, and values are not
// validated against values.schema.json here: hack/render-chart.ts does that with ajv on the
// coalesced values this program prints with --show-values, exactly where Helm validates them.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

// chartMetadata mirrors Helm's chart.Metadata: templates read .Chart.Name, .Chart.AppVersion...
type chartMetadata struct {
	Name         string            `json:"name,omitempty"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version,omitempty"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Maintainers  []interface{}     `json:"maintainers,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion,omitempty"`
	Condition    string            `json:"condition,omitempty"`
	Tags         string            `json:"tags,omitempty"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
	Type         string            `json:"type,omitempty"`
	IsRoot       bool              `json:"-"`
}

// kubeVersion mirrors chartutil.KubeVersion.
type kubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k kubeVersion) String() string { return k.Version }

// versionSet mirrors chartutil.VersionSet: "group/version" or "group/version/Kind".
type versionSet []string

func (v versionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions versionSet
	HelmVersion map[string]string
}

// files mirrors Helm's engine.files for the one accessor charts commonly use.
type files map[string][]byte

func (f files) Get(name string) string      { return string(f[name]) }
func (f files) GetBytes(name string) []byte { return f[name] }

// builtinAPIVersions is the set `helm template` knows without a cluster (the client's scheme).
var builtinAPIVersions = []string{
	"v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1", "apiregistration.k8s.io/v1",
	"apps/v1", "authentication.k8s.io/v1", "authorization.k8s.io/v1", "autoscaling/v1", "autoscaling/v2",
	"batch/v1", "certificates.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
	"events.k8s.io/v1", "flowcontrol.apiserver.k8s.io/v1", "networking.k8s.io/v1", "node.k8s.io/v1",
	"policy/v1", "rbac.authorization.k8s.io/v1", "scheduling.k8s.io/v1", "storage.k8s.io/v1",
}

// installOrder is Helm's releaseutil.InstallOrder.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
	"RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
}

type options struct {
	releaseName string
	chartDir    string
	namespace   string
	valueFiles  []string
	sets        []string
	setStrings  []string
	includeCRDs bool
	kubeVersion string
	apiVersions []string
	showValues  bool
	showNotes   bool
}

const usage = `usage: helm-render [flags] RELEASE_NAME CHART_DIR
  -n, --namespace NS       release namespace (default "default")
  -f, --values FILE        values file, repeatable, later wins
      --set a.b=c,...      values on the command line (Helm's strvals syntax), repeatable
      --set-string a.b=c   like --set, values always strings
      --include-crds       include the chart's crds/ first, as helm template --include-crds
      --kube-version V     Kubernetes version for .Capabilities and Chart.yaml kubeVersion (default v1.32.0)
  -a, --api-versions G/V   extra API versions for .Capabilities.APIVersions, repeatable
      --show-values        print the coalesced values as JSON instead of rendering
      --notes              print the rendered NOTES.txt after the manifests, as helm install --dry-run`

func parseArgs(args []string) (options, error) {
	o := options{namespace: "default", kubeVersion: "v1.32.0"}
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := a, "", false
		if strings.HasPrefix(a, "--") && strings.Contains(a, "=") {
			j := strings.Index(a, "=")
			name, value, hasValue = a[:j], a[j+1:], true
		}
		next := func() (string, error) {
			if hasValue {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("flag %s needs a value", name)
			}
			i++
			return args[i], nil
		}
		var err error
		var v string
		switch name {
		case "-n", "--namespace":
			o.namespace, err = next()
		case "-f", "--values":
			v, err = next()
			o.valueFiles = append(o.valueFiles, v)
		case "--set":
			v, err = next()
			o.sets = append(o.sets, v)
		case "--set-string":
			v, err = next()
			o.setStrings = append(o.setStrings, v)
		case "--include-crds":
			o.includeCRDs = true
		case "--kube-version":
			o.kubeVersion, err = next()
		case "-a", "--api-versions":
			v, err = next()
			o.apiVersions = append(o.apiVersions, v)
		case "--show-values":
			o.showValues = true
		case "--notes":
			o.showNotes = true
		case "-h", "--help":
			return o, errors.New(usage)
		default:
			if strings.HasPrefix(a, "-") {
				return o, fmt.Errorf("unknown flag %s\n%s", a, usage)
			}
			positional = append(positional, a)
		}
		if err != nil {
			return o, err
		}
	}
	if len(positional) != 2 {
		return o, fmt.Errorf("want RELEASE_NAME and CHART_DIR, got %d arguments\n%s", len(positional), usage)
	}
	o.releaseName, o.chartDir = positional[0], positional[1]
	return o, nil
}

var releaseNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func main() {
	o, err := parseArgs(os.Args[1:])
	if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if len(o.releaseName) > 53 || !releaseNameRE.MatchString(o.releaseName) {
		return fmt.Errorf("release name %q: invalid release name, must match regex %s and the length must not be longer than 53", o.releaseName, releaseNameRE)
	}
	meta, err := loadChartMetadata(o.chartDir)
	if err != nil {
		return err
	}
	caps, err := newCapabilities(o.kubeVersion, o.apiVersions)
	if err != nil {
		return err
	}
	if meta.KubeVersion != "" {
		c, err := semver.NewConstraint(meta.KubeVersion)
		if err != nil {
			return fmt.Errorf("chart %s: invalid kubeVersion constraint %q: %s", meta.Name, meta.KubeVersion, err)
		}
		v, err := semver.NewVersion(caps.KubeVersion.Version)
		if err != nil {
			return err
		}
		if !c.Check(v) {
			return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", meta.KubeVersion, caps.KubeVersion.Version)
		}
	}
	values, err := loadValues(o)
	if err != nil {
		return err
	}
	if o.showValues {
		out, err := json.Marshal(values)
		if err != nil {
			return err
		}
		fmt.Println(string(out))
		return nil
	}
	templates, otherFiles, err := loadChartFiles(o.chartDir, meta.Name)
	if err != nil {
		return err
	}
	top := map[string]interface{}{
		"Values":       values,
		"Chart":        meta,
		"Capabilities": caps,
		"Files":        otherFiles,
		"Subcharts":    map[string]interface{}{},
		"Release": map[string]interface{}{
			"Name": o.releaseName, "Namespace": o.namespace, "IsUpgrade": false, "IsInstall": true,
			"Revision": 1, "Service": "Helm",
		},
	}
	rendered, err := render(templates, top, meta.Name)
	if err != nil {
		return err
	}
	notesName := path.Join(meta.Name, "templates", "NOTES.txt")
	notes := rendered[notesName]
	for name := range rendered {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(rendered, name)
		}
	}
	manifests, err := sortManifests(rendered)
	if err != nil {
		return err
	}
	var b strings.Builder
	if o.includeCRDs {
		crds, err := loadCRDs(o.chartDir, meta.Name)
		if err != nil {
			return err
		}
		for _, c := range crds {
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", c.name, c.content)
		}
	}
	for _, m := range manifests {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.name, m.content)
	}
	fmt.Println(strings.TrimSpace(b.String()))
	if o.showNotes && notes != "" {
		fmt.Printf("\nNOTES:\n%s\n", notes)
	}
	return nil
}

func loadChartMetadata(dir string) (*chartMetadata, error) {
	data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, fmt.Errorf("%s is not a chart: %s", dir, err)
	}
	var m chartMetadata
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("cannot load Chart.yaml: %s", err)
	}
	if m.APIVersion != "v2" {
		return nil, fmt.Errorf("Chart.yaml: apiVersion %q is not supported here (want v2)", m.APIVersion)
	}
	if m.Name == "" || m.Version == "" {
		return nil, errors.New("validation: chart.metadata.name and chart.metadata.version are required")
	}
	if m.Type == "library" {
		return nil, errors.New("library charts are not installable")
	}
	m.IsRoot = true
	return &m, nil
}

func newCapabilities(version string, extra []string) (capabilities, error) {
	v, err := semver.NewVersion(version)
	if err != nil {
		return capabilities{}, fmt.Errorf("invalid kube version %q: %s", version, err)
	}
	apis := append(versionSet{}, builtinAPIVersions...)
	apis = append(apis, extra...)
	full := "v" + v.String()
	return capabilities{
		KubeVersion: kubeVersion{Version: full, Major: strconv.FormatUint(v.Major(), 10), Minor: strconv.FormatUint(v.Minor(), 10), GitVersion: full},
		APIVersions: apis,
		HelmVersion: map[string]string{"version": "v3.17.0-helm-render"},
	}, nil
}

// loadChartFiles returns the templates (keyed "<chart>/templates/<file>") and the other files
// (.Files), as Helm's loader splits them.
func loadChartFiles(dir, chartName string) (map[string]string, files, error) {
	templates := map[string]string{}
	others := files{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if info.IsDir() {
			if rel == "charts" {
				return errors.New("subcharts (charts/) are not supported by helm-render")
			}
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			templates[path.Join(chartName, rel)] = string(data)
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json" || rel == "Chart.lock":
		default:
			others[rel] = data
		}
		return nil
	})
	return templates, others, err
}

type crdFile struct{ name, content string }

func loadCRDs(dir, chartName string) ([]crdFile, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "crds"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []crdFile
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, "crds", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, crdFile{name: path.Join(chartName, "crds", e.Name()), content: string(data)})
	}
	return out, nil
}

// ---- values ----

func readValuesFile(p string) (map[string]interface{}, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("failed to parse %s: %s", p, err)
	}
	return m, nil
}

// loadValues merges user values (-f in order, then --set, then --set-string) as Helm's
// values.Options.MergeValues does, then coalesces them over the chart's values.yaml.
func loadValues(o options) (map[string]interface{}, error) {
	user := map[string]interface{}{}
	for _, f := range o.valueFiles {
		m, err := readValuesFile(f)
		if err != nil {
			return nil, err
		}
		user = mergeMaps(user, m)
	}
	for _, s := range o.sets {
		if err := parseSet(s, user, false); err != nil {
			return nil, fmt.Errorf("failed parsing --set data: %s", err)
		}
	}
	for _, s := range o.setStrings {
		if err := parseSet(s, user, true); err != nil {
			return nil, fmt.Errorf("failed parsing --set-string data: %s", err)
		}
	}
	defaults := map[string]interface{}{}
	if _, err := os.Stat(filepath.Join(o.chartDir, "values.yaml")); err == nil {
		d, err := readValuesFile(filepath.Join(o.chartDir, "values.yaml"))
		if err != nil {
			return nil, err
		}
		defaults = d
	}
	return coalesce(user, defaults), nil
}

func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if bv, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(bv, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce lays user values over chart defaults as chartutil.CoalesceValues does: tables merge
// key by key, anything else from the user wins, and a user null removes the default.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for key, sv := range src {
		dv, present := dst[key]
		if !present {
			dst[key] = sv
			continue
		}
		if dv == nil {
			delete(dst, key)
			continue
		}
		dm, dIsMap := dv.(map[string]interface{})
		sm, sIsMap := sv.(map[string]interface{})
		if dIsMap && sIsMap {
			dst[key] = coalesce(dm, sm)
		} else if dIsMap != sIsMap && sv != nil {
			fmt.Fprintf(os.Stderr, "coalesce.go: warning: cannot overwrite table with non table for %s (%v)\n", key, sv)
		}
	}
	return dst
}

// parseSet implements the common part of Helm's strvals: comma-separated key=value pairs,
// dotted keys with \. escapes, name[index] list elements, {a,b} lists, and typed scalars.
func parseSet(s string, into map[string]interface{}, asString bool) error {
	for _, pair := range splitUnescaped(s, ',', true) {
		if pair == "" {
			continue
		}
		eq := indexUnescaped(pair, '=')
		if eq < 0 {
			return fmt.Errorf("key %q has no value", pair)
		}
		key, raw := pair[:eq], pair[eq+1:]
		var val interface{}
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") && !asString {
			var list []interface{}
			for _, item := range splitUnescaped(raw[1:len(raw)-1], ',', false) {
				list = append(list, typedVal(unescape(item), false))
			}
			val = list
		} else {
			val = typedVal(unescape(raw), asString)
		}
		if err := setPath(into, splitUnescaped(key, '.', false), val); err != nil {
			return fmt.Errorf("%s: %s", key, err)
		}
	}
	return nil
}

func typedVal(v string, asString bool) interface{} {
	if asString {
		return v
	}
	switch {
	case strings.EqualFold(v, "true"):
		return true
	case strings.EqualFold(v, "false"):
		return false
	case strings.EqualFold(v, "null"):
		return nil
	case v == "0":
		return int64(0)
	}
	if len(v) != 0 && v[0] != '0' {
		if iv, err := strconv.ParseInt(v, 10, 64); err == nil {
			return iv
		}
	}
	return v
}

var indexRE = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

func setPath(m map[string]interface{}, keys []string, val interface{}) error {
	k := unescape(keys[0])
	last := len(keys) == 1
	if g := indexRE.FindStringSubmatch(k); g != nil {
		idx, _ := strconv.Atoi(g[2])
		list, _ := m[g[1]].([]interface{})
		for len(list) <= idx {
			list = append(list, nil)
		}
		if last {
			list[idx] = val
		} else {
			child, ok := list[idx].(map[string]interface{})
			if !ok {
				child = map[string]interface{}{}
			}
			if err := setPath(child, keys[1:], val); err != nil {
				return err
			}
			list[idx] = child
		}
		m[g[1]] = list
		return nil
	}
	if last {
		m[k] = val
		return nil
	}
	child, ok := m[k].(map[string]interface{})
	if !ok {
		child = map[string]interface{}{}
		m[k] = child
	}
	return setPath(child, keys[1:], val)
}

// splitUnescaped splits on sep outside backslash escapes (and, for pairs, outside {...}).
func splitUnescaped(s string, sep rune, braces bool) []string {
	var parts []string
	var cur strings.Builder
	depth := 0
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune('\\')
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case braces && r == '{':
			depth++
			cur.WriteRune(r)
		case braces && r == '}':
			depth--
			cur.WriteRune(r)
		case r == sep && depth == 0:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(parts, cur.String())
}

func indexUnescaped(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == c {
			return i
		}
	}
	return -1
}

func unescape(s string) string {
	var b strings.Builder
	escaped := false
	for _, r := range s {
		if !escaped && r == '\\' {
			escaped = true
			continue
		}
		escaped = false
		b.WriteRune(r)
	}
	return b.String()
}

// ---- templates ----

const recursionMax = 1000

var warnRE = regexp.MustCompile(`HELM_ERR_START((?s).*)HELM_ERR_END`)

func warnWrap(s string) string { return "HELM_ERR_START" + s + "HELM_ERR_END" }

func funcMap(t *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	included := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if included[name] > recursionMax {
			return "", fmt.Errorf("rendering template has a nested reference name: %s: unable to execute template", name)
		}
		included[name]++
		defer func() { included[name]-- }()
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, vals map[string]interface{}) (string, error) {
		tmpl, _ := vals["Template"].(map[string]interface{})
		name, _ := tmpl["Name"].(string)
		if name == "" {
			return "", fmt.Errorf("cannot retrieve Template.Name from values inside tpl function: %s", text)
		}
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		if _, err := clone.New(name).Parse(text); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %s", text, err)
		}
		var buf strings.Builder
		if err := clone.ExecuteTemplate(&buf, name, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %s", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warnWrap(warn))
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warnWrap(warn))
		}
		return val, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(warnWrap(msg)) }
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return nil, errors.New(warnWrap("lookup is not available: this chart must render without a cluster (helm-render refuses lookup)"))
	}
	f["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		a := []interface{}{}
		if err := yaml.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	return f
}

// render parses every template into one set (so partials are shared) in Helm's order, then
// executes each non-partial with its own .Template.
func render(templates map[string]string, top map[string]interface{}, chartName string) (out map[string]string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rendering template failed: %v", r)
		}
	}()
	t := template.New("gotpl")
	t.Option("missingkey=zero")
	t.Funcs(funcMap(t))
	keys := make([]string, 0, len(templates))
	for k := range templates {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { // Helm: deeper paths first, then reverse lexical
		ci, cj := strings.Count(keys[i], "/"), strings.Count(keys[j], "/")
		if ci == cj {
			return keys[i] > keys[j]
		}
		return ci > cj
	})
	for _, name := range keys {
		if _, err := t.New(name).Parse(templates[name]); err != nil {
			return nil, cleanupParseError(name, err)
		}
	}
	out = map[string]string{}
	for _, name := range keys {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		vals := map[string]interface{}{}
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(chartName, "templates")}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, vals); err != nil {
			return nil, cleanupExecError(name, err)
		}
		out[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return out, nil
}

func cleanupParseError(name string, err error) error {
	tokens := strings.Split(err.Error(), ": ")
	if len(tokens) == 1 {
		return fmt.Errorf("parse error in (%s): %s", name, err)
	}
	return fmt.Errorf("parse error at (%s): %s", tokens[1], tokens[len(tokens)-1])
}

func cleanupExecError(name string, err error) error {
	var execErr template.ExecError
	if !errors.As(err, &execErr) {
		return err
	}
	tokens := strings.SplitN(err.Error(), ": ", 3)
	if len(tokens) != 3 {
		return fmt.Errorf("execution error in (%s): %s", name, err)
	}
	if parts := warnRE.FindStringSubmatch(tokens[2]); len(parts) >= 2 {
		return fmt.Errorf("execution error at (%s): %s", tokens[1], parts[1])
	}
	return err
}

// ---- manifests ----

type manifest struct {
	name, content, kind string
}

var docSeparator = regexp.MustCompile("(?:^|\\s*\n)---\\s*")

// sortManifests splits each rendered file into documents and orders them as Helm's
// releaseutil.SortManifests does: files by name, documents in file order, then a stable sort by
// kind in install order with unknown kinds last, alphabetically. Hooks are not supported.
func sortManifests(rendered map[string]string) ([]manifest, error) {
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []manifest
	for _, n := range names {
		content := rendered[n]
		if strings.HasPrefix(path.Base(n), "_") || strings.TrimSpace(content) == "" {
			continue
		}
		for _, d := range docSeparator.Split(strings.TrimSpace(content), -1) {
			if d == "" {
				continue
			}
			d = strings.TrimSpace(d)
			var head struct {
				Kind     string `json:"kind"`
				Metadata *struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(d), &head); err != nil {
				return nil, fmt.Errorf("YAML parse error on %s: %s", n, err)
			}
			if head.Metadata != nil {
				if _, hook := head.Metadata.Annotations["helm.sh/hook"]; hook {
					return nil, fmt.Errorf("%s: Helm hooks are not supported by helm-render", n)
				}
			}
			out = append(out, manifest{name: n, content: d, kind: head.Kind})
		}
	}
	rank := map[string]int{}
	for i, k := range installOrder {
		rank[k] = i
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, aok := rank[out[i].kind]
		b, bok := rank[out[j].kind]
		switch {
		case !aok && !bok:
			return out[i].kind < out[j].kind
		case !aok:
			return false
		case !bok:
			return true
		}
		return a < b
	})
	return out, nil
}
