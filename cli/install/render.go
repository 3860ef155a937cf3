package install

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

// Release is what Helm calls the release: its name and namespace.
type Release struct {
	Name      string
	Namespace string
}

// Render renders the chart in chartFS with values merged over the chart's
// values.yaml, as `helm template` would: the crds/ files first, then every
// template not starting with "_", in file name order, each document headed
// by a "# Source:" comment.
func Render(chartFS fs.FS, rel Release, values map[string]any) (string, error) {
	var chart map[string]any
	if err := readYAML(chartFS, "Chart.yaml", &chart); err != nil {
		return "", err
	}
	var defaults map[string]any
	if err := readYAML(chartFS, "values.yaml", &defaults); err != nil {
		return "", err
	}
	vals := merge(defaults, values)
	name, _ := chart["name"].(string)
	top := map[string]any{
		"Values":  vals,
		"Release": map[string]any{"Name": rel.Name, "Namespace": rel.Namespace, "Service": "clustermesh"},
		"Chart":   map[string]any{"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
	}

	var out strings.Builder
	crds, err := fs.Glob(chartFS, "crds/*.yaml")
	if err != nil {
		return "", err
	}
	for _, p := range crds {
		b, err := fs.ReadFile(chartFS, p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&out, "---\n# Source: %s/%s\n%s", name, p, ensureNewline(string(b)))
	}

	files, err := fs.Glob(chartFS, "templates/*")
	if err != nil {
		return "", err
	}
	slices.Sort(files)
	var tmpl *template.Template
	tmpl = template.New(name).Option("missingkey=zero").Funcs(funcs(func(name string, data any) (string, error) {
		var b bytes.Buffer
		err := tmpl.ExecuteTemplate(&b, name, data)
		return b.String(), err
	}))
	for _, f := range files {
		b, err := fs.ReadFile(chartFS, f)
		if err != nil {
			return "", err
		}
		if _, err := tmpl.New(f).Parse(string(b)); err != nil {
			return "", fmt.Errorf("chart template %s: %w", f, err)
		}
	}
	for _, f := range files {
		if strings.HasPrefix(path.Base(f), "_") {
			continue
		}
		var b bytes.Buffer
		if err := tmpl.ExecuteTemplate(&b, f, top); err != nil {
			return "", fmt.Errorf("render chart: %w", unwrapExec(err))
		}
		body := strings.ReplaceAll(b.String(), "<no value>", "")
		for doc := range strings.SplitSeq(body, "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s/%s\n%s", name, f, ensureNewline(strings.TrimLeft(doc, "\n")))
		}
	}
	return out.String(), nil
}

// funcs are the Helm (sprig) functions the chart uses, with Helm's
// semantics.
func funcs(include func(string, any) (string, error)) template.FuncMap {
	return template.FuncMap{
		"include": include,
		"required": func(msg string, v any) (any, error) {
			if v == nil {
				return nil, errors.New(msg)
			}
			if s, ok := v.(string); ok && s == "" {
				return nil, errors.New(msg)
			}
			return v, nil
		},
		"fail": func(msg string) (string, error) { return "", errors.New(msg) },
		"toYaml": func(v any) string {
			b, err := yaml.Marshal(v)
			if err != nil {
				return ""
			}
			return strings.TrimSuffix(string(b), "\n")
		},
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"nindent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"quote": func(v ...any) string {
			var out []string
			for _, x := range v {
				if x != nil {
					out = append(out, fmt.Sprintf("%q", strval(x)))
				}
			}
			return strings.Join(out, " ")
		},
		"b64enc": func(s any) string { return base64.StdEncoding.EncodeToString([]byte(strval(s))) },
		"default": func(d any, v ...any) any {
			if len(v) == 0 || empty(v[0]) {
				return d
			}
			return v[0]
		},
		"join": func(sep string, v any) string {
			var parts []string
			rv := reflect.ValueOf(v)
			if rv.Kind() == reflect.Slice {
				for i := range rv.Len() {
					parts = append(parts, strval(rv.Index(i).Interface()))
				}
			} else if v != nil {
				parts = append(parts, strval(v))
			}
			return strings.Join(parts, sep)
		},
	}
}

func strval(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func empty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return rv.IsZero()
	case reflect.Float64, reflect.Float32:
		return rv.Float() == 0
	}
	return false
}

// merge returns base with over merged in: maps deeply, anything else
// replaced.
func merge(base, over map[string]any) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = merge(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func readYAML(fsys fs.FS, name string, into any) error {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		return fmt.Errorf("chart %s: %w", name, err)
	}
	return nil
}

func ensureNewline(s string) string {
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// unwrapExec keeps the message of a failed required/fail (the user's
// fix) and drops text/template's position prefix when it is one.
func unwrapExec(err error) error {
	var ee template.ExecError
	if errors.As(err, &ee) {
		msg := ee.Err.Error()
		if _, rest, ok := strings.Cut(msg, "error calling "); ok {
			if _, m, ok := strings.Cut(rest, ": "); ok {
				return fmt.Errorf("%s (in %s)", m, ee.Name)
			}
		}
	}
	return err
}
