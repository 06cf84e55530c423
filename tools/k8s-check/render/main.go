// k8s-render renders a Helm chart as `helm template` does, without helm: Go's
// text/template with the sprig functions and helm's own (include, tpl, toYaml,
// fromYaml, toJson, required, lookup), .Values/.Release/.Chart/.Capabilities/
// .Template. It also turns YAML files into JSON for the Node validator.
//
//	k8s-render render CHART [-f values.yaml]... [--set a.b=v]... [--name R]
//	          [--namespace NS] [--api-versions group/version]... [--notes FILE]
//	          [--values-json FILE]
//	k8s-render tojson FILE...   (every YAML document, as [{"source","index","doc"}])
//
// Built offline in GOPATH mode (scripts/check-k8s.sh): github.com/Masterminds/sprig
// and gopkg.in/yaml.v3 from Debian's golang-* packages.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "k8s-render: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		die("usage: k8s-render render CHART [options] | k8s-render tojson FILE...")
	}
	switch os.Args[1] {
	case "render":
		if err := render(os.Args[2:]); err != nil {
			die("%v", err)
		}
	case "tojson":
		if err := toJSONFiles(os.Args[2:]); err != nil {
			die("%v", err)
		}
	default:
		die("unknown command %q", os.Args[1])
	}
}

type options struct {
	chart, name, namespace, notes, valuesJSON string
	files, sets, apiVersions                  []string
}

func parseArgs(args []string) (*options, error) {
	o := &options{name: "kiln-serving", namespace: "default"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		var v string
		switch a {
		case "-f", "--values":
			v, err = next()
			o.files = append(o.files, v)
		case "--set":
			v, err = next()
			o.sets = append(o.sets, v)
		case "--name":
			o.name, err = next()
		case "--namespace", "-n":
			o.namespace, err = next()
		case "--api-versions":
			v, err = next()
			o.apiVersions = append(o.apiVersions, v)
		case "--notes":
			o.notes, err = next()
		case "--values-json":
			o.valuesJSON, err = next()
		default:
			if strings.HasPrefix(a, "-") || o.chart != "" {
				return nil, fmt.Errorf("unexpected argument %q", a)
			}
			o.chart = a
		}
		if err != nil {
			return nil, err
		}
	}
	if o.chart == "" {
		return nil, fmt.Errorf("no chart directory given")
	}
	return o, nil
}

func readYAMLMap(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return m, nil
}

// mergeValues merges src into dst as helm does: maps merge recursively, a null
// in src deletes the key, anything else replaces.
func mergeValues(dst, src map[string]interface{}) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := dst[k].(map[string]interface{})
		if sok && dok {
			mergeValues(dm, sm)
		} else {
			dst[k] = v
		}
	}
}

// parseSetValue types a --set value as helm's strvals does for the common cases.
func parseSetValue(s string) interface{} {
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && (s == "0" || !strings.HasPrefix(s, "0")) {
		return n
	}
	return s
}

func applySet(values map[string]interface{}, expr string) error {
	for _, kv := range strings.Split(expr, ",") {
		eq := strings.Index(kv, "=")
		if eq <= 0 {
			return fmt.Errorf("--set %q: want key=value", kv)
		}
		keys := strings.Split(kv[:eq], ".")
		m := values
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[k] = next
			}
			m = next
		}
		last := keys[len(keys)-1]
		if v := parseSetValue(kv[eq+1:]); v == nil {
			delete(m, last)
		} else {
			m[last] = v
		}
	}
	return nil
}

type apiVersions []string

// Has is what templates call as .Capabilities.APIVersions.Has.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	enc.Close()
	return strings.TrimSuffix(buf.String(), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func funcMap(t **template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	// Helm removes these: a render must not depend on the environment.
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["toJson"] = toJSON
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf("%s", msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := (*t).ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := (*t).Clone()
		if err != nil {
			return "", err
		}
		c, err = c.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := c.Execute(&buf, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["lookup"] = func(string, string, string, string) map[string]interface{} {
		return map[string]interface{}{} // as `helm template`: no cluster
	}
	return f
}

func render(args []string) error {
	o, err := parseArgs(args)
	if err != nil {
		return err
	}
	chartMeta, err := readYAMLMap(filepath.Join(o.chart, "Chart.yaml"))
	if err != nil {
		return err
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return fmt.Errorf("%s/Chart.yaml has no name", o.chart)
	}
	values, err := readYAMLMap(filepath.Join(o.chart, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range o.files {
		m, err := readYAMLMap(f)
		if err != nil {
			return err
		}
		mergeValues(values, m)
	}
	for _, s := range o.sets {
		if err := applySet(values, s); err != nil {
			return err
		}
	}
	if o.valuesJSON != "" {
		b, err := json.MarshalIndent(values, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.valuesJSON, b, 0o644); err != nil {
			return err
		}
	}

	chart := map[string]interface{}{}
	for k, v := range chartMeta { // .Chart.Name, .Chart.AppVersion, ... as helm spells them
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}
	base := chartName + "/templates"
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chart,
		"Release": map[string]interface{}{
			"Name": o.name, "Namespace": o.namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.30.0", "Major": "1", "Minor": "30",
				"GitVersion": "v1.30.0"},
			"APIVersions": append(apiVersions{"v1", "apps/v1", "batch/v1", "policy/v1",
				"autoscaling/v2", "networking.k8s.io/v1"}, o.apiVersions...),
		},
		"Files": map[string]interface{}{},
	}

	paths, err := filepath.Glob(filepath.Join(o.chart, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	var t *template.Template
	t = template.New(chartName).Option("missingkey=zero").Funcs(funcMap(&t))
	var names []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		name := base + "/" + filepath.Base(p)
		if _, err := t.New(name).Parse(string(data)); err != nil {
			return err
		}
		names = append(names, name)
	}

	var out bytes.Buffer
	for _, name := range names {
		file := filepath.Base(name)
		if strings.HasPrefix(file, "_") || (file != "NOTES.txt" && !strings.HasSuffix(file, ".yaml") &&
			!strings.HasSuffix(file, ".yml")) {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": name, "BasePath": base}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if file == "NOTES.txt" {
			if o.notes != "" {
				if err := os.WriteFile(o.notes, []byte(text), 0o644); err != nil {
					return err
				}
			}
			continue
		}
		for _, doc := range splitDocs(text) {
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, doc)
		}
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

// splitDocs splits on "---" lines and drops documents that are only whitespace
// or comments, as helm does.
func splitDocs(text string) []string {
	var docs []string
	var cur []string
	flush := func() {
		doc := strings.TrimSpace(strings.Join(cur, "\n"))
		cur = nil
		for _, l := range strings.Split(doc, "\n") {
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "#") {
				docs = append(docs, doc)
				return
			}
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimRight(line, " ") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}

// toJSONFiles prints every YAML document of the files as JSON, with keys as strings.
func toJSONFiles(files []string) error {
	type entry struct {
		Source string      `json:"source"`
		Index  int         `json:"index"`
		Doc    interface{} `json:"doc"`
	}
	all := []entry{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc interface{}
			err := dec.Decode(&doc)
			if err != nil {
				if err.Error() == "EOF" {
					break
				}
				return fmt.Errorf("%s: document %d: %v", f, i, err)
			}
			if doc == nil {
				continue
			}
			all = append(all, entry{Source: f, Index: i, Doc: doc})
		}
	}
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}
