package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
)

func TestMergeValuesAsHelm(t *testing.T) {
	dst := map[string]interface{}{"a": map[string]interface{}{"b": 1, "c": 2}, "d": "x"}
	mergeValues(dst, map[string]interface{}{"a": map[string]interface{}{"b": 3}, "d": nil, "e": true})
	a := dst["a"].(map[string]interface{})
	if a["b"] != 3 || a["c"] != 2 {
		t.Fatalf("nested merge: %v", a)
	}
	if _, ok := dst["d"]; ok {
		t.Fatalf("null did not delete d: %v", dst)
	}
	if dst["e"] != true {
		t.Fatalf("new key: %v", dst)
	}
}

func TestSetTypesValues(t *testing.T) {
	v := map[string]interface{}{"image": map[string]interface{}{"tag": "0.1.0"}}
	if err := applySet(v, "image.tag=v1.0.1,replicaCount=3,gpu.enabled=true,x=007"); err != nil {
		t.Fatal(err)
	}
	if v["image"].(map[string]interface{})["tag"] != "v1.0.1" || v["replicaCount"] != int64(3) ||
		v["gpu"].(map[string]interface{})["enabled"] != true || v["x"] != "007" {
		t.Fatalf("--set gave %v", v)
	}
	if err := applySet(v, "novalue"); err == nil {
		t.Fatal("--set without = accepted")
	}
}

func TestSplitDocsDropsEmptyOnes(t *testing.T) {
	docs := splitDocs("\n---\n# only a comment\n---\na: 1\n---\n\n---\nb: 2\n")
	if len(docs) != 2 || docs[0] != "a: 1" || docs[1] != "b: 2" {
		t.Fatalf("docs %q", docs)
	}
}

func execute(t *testing.T, text string, data interface{}) (string, error) {
	t.Helper()
	var tpl *template.Template
	tpl = template.New("t").Option("missingkey=zero").Funcs(funcMap(&tpl))
	if _, err := tpl.New("helpers").Parse(`{{- define "name" -}}kiln-{{ .Name }}{{- end -}}`); err != nil {
		t.Fatal(err)
	}
	if _, err := tpl.New("main").Parse(text); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	err := tpl.ExecuteTemplate(&b, "main", data)
	return b.String(), err
}

func TestHelmFunctions(t *testing.T) {
	data := map[string]interface{}{"Name": "serving", "List": []interface{}{"a", map[string]interface{}{"k": 1}},
		"Tpl": "{{ .Name }}-x", "Empty": ""}
	cases := map[string]string{
		`{{ include "name" . }}`:                    "kiln-serving",
		`{{ include "name" . | upper }}`:            "KILN-SERVING",
		`{{ tpl .Tpl . }}`:                          "serving-x",
		`{{ toYaml .List | nindent 2 }}`:            "\n  - a\n  - k: 1",
		`{{ (fromYaml "a: {b: 2}").a.b }}`:          "2",
		`{{ toJson .List }}`:                        `["a",{"k":1}]`,
		`{{ required "need it" .Name }}`:            "serving",
		`{{ "x" | sha256sum | trunc 8 }}`:           "2d711642",
		`{{ default "d" .Empty }}`:                  "d",
		`{{ lookup "v1" "Secret" "ns" "n" | len }}`: "0",
	}
	for text, want := range cases {
		got, err := execute(t, text, data)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", text, got, err, want)
		}
	}
	if _, err := execute(t, `{{ required "name is required" .Empty }}`, data); err == nil ||
		!strings.Contains(err.Error(), "name is required") {
		t.Errorf("required on empty: %v", err)
	}
	var tpl *template.Template
	tpl = template.New("t").Funcs(funcMap(&tpl))
	if _, err := tpl.Parse(`{{ env "HOME" }}`); err == nil {
		t.Error("env is available (helm removes it)")
	}
}

func TestRenderChart(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Chart.yaml", "name: c\nversion: 1.2.3\nappVersion: \"9\"\n")
	write("values.yaml", "port: 80\nsm: false\n")
	write("templates/_h.tpl", `{{- define "c.cm" -}}{{ .Release.Name }}-{{ .Chart.AppVersion }}{{- end -}}`)
	write("templates/cm.yaml", "kind: ConfigMap\nname: {{ include \"c.cm\" . }}\nport: {{ .Values.port }}\n"+
		"ns: {{ .Release.Namespace }}\nsum: {{ include (print $.Template.BasePath \"/x.yaml\") . | sha256sum | trunc 6 }}\n"+
		"---\n{{- if .Values.sm }}\nkind: ServiceMonitor\nhas: {{ .Capabilities.APIVersions.Has \"monitoring.coreos.com/v1\" }}\n{{- end }}\n")
	write("templates/x.yaml", "kind: X\n")
	out, err := os.CreateTemp(dir, "out")
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = out
	err = render([]string{dir, "--name", "r", "--namespace", "n", "--set", "port=8080,sm=true",
		"--api-versions", "monitoring.coreos.com/v1"})
	os.Stdout = stdout
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out.Name())
	got := string(b)
	for _, want := range []string{"# Source: c/templates/cm.yaml\nkind: ConfigMap\nname: r-9\nport: 8080\nns: n\nsum: ",
		"kind: ServiceMonitor\nhas: true", "# Source: c/templates/x.yaml\nkind: X"} {
		if !strings.Contains(got, want) {
			t.Errorf("render output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "_h.tpl") {
		t.Errorf("a partial was rendered:\n%s", got)
	}
}
