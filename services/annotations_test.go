package services

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func badBool(key, value string) string {
	return fmt.Sprintf(`service shop/cart: invalid annotation %s=%q: accepted values are "true" and "false" (any case); fix or remove it`, key, value)
}

func badAffinity(key, value string) string {
	return fmt.Sprintf(`service shop/cart: invalid annotation %s=%q: accepted values are "local", "remote", "none" and "" (any case); fix or remove it`, key, value)
}

func conflict(key, v1, legacy, v2 string) string {
	return fmt.Sprintf(`service shop/cart: invalid annotation: %s=%q and legacy %s=%q disagree; remove %s or give both the same value`, key, v1, legacy, v2, legacy)
}

func TestParseAnnotations(t *testing.T) {
	const (
		g, gL = AnnotationGlobal, AnnotationGlobalLegacy
		s, sL = AnnotationShared, AnnotationSharedLegacy
		a, aL = AnnotationAffinity, AnnotationAffinityLegacy
	)
	global := Annotations{Global: true, Shared: true}
	tests := []struct {
		name string
		ann  map[string]string
		want Annotations
		errs []string
	}{
		{name: "no annotations", ann: nil, want: Annotations{}},
		{name: "unrelated annotations", ann: map[string]string{"app": "true"}, want: Annotations{}},
		{name: "global", ann: map[string]string{g: "true"}, want: global},
		{name: "global upper case", ann: map[string]string{g: "TRUE"}, want: global},
		{name: "global mixed case", ann: map[string]string{g: "True"}, want: global},
		{name: "global legacy", ann: map[string]string{gL: "true"}, want: global},
		{name: "global both spellings agree modulo case", ann: map[string]string{g: "true", gL: "TRUE"}, want: global},
		{name: "global false", ann: map[string]string{g: "false"}, want: Annotations{}},
		{name: "global false legacy", ann: map[string]string{gL: "FALSE"}, want: Annotations{}},
		{
			name: "global spellings disagree",
			ann:  map[string]string{g: "true", gL: "false"},
			want: Annotations{},
			errs: []string{`service shop/cart: invalid annotation: service.cilium.io/global="true" and legacy io.cilium/global-service="false" disagree; remove io.cilium/global-service or give both the same value`},
		},
		{
			name: "global yes",
			ann:  map[string]string{g: "yes"},
			want: Annotations{},
			errs: []string{`service shop/cart: invalid annotation service.cilium.io/global="yes": accepted values are "true" and "false" (any case); fix or remove it`},
		},
		{name: "global 1", ann: map[string]string{g: "1"}, want: Annotations{}, errs: []string{badBool(g, "1")}},
		{name: "global empty", ann: map[string]string{g: ""}, want: Annotations{}, errs: []string{badBool(g, "")}},
		{name: "global padded", ann: map[string]string{g: " true"}, want: Annotations{}, errs: []string{badBool(g, " true")}},
		{name: "global legacy invalid", ann: map[string]string{gL: "on"}, want: Annotations{}, errs: []string{badBool(gL, "on")}},
		{
			name: "one spelling invalid falls back to not global",
			ann:  map[string]string{g: "true", gL: "yes"},
			want: Annotations{},
			errs: []string{badBool(gL, "yes")},
		},
		{name: "shared true", ann: map[string]string{g: "true", s: "true"}, want: global},
		{name: "shared false", ann: map[string]string{g: "true", s: "false"}, want: Annotations{Global: true}},
		{name: "shared legacy false", ann: map[string]string{g: "true", sL: "False"}, want: Annotations{Global: true}},
		{name: "shared legacy true", ann: map[string]string{gL: "true", sL: "true"}, want: global},
		{name: "shared without global", ann: map[string]string{s: "true"}, want: Annotations{}},
		{name: "shared with global false", ann: map[string]string{g: "false", s: "true"}, want: Annotations{}},
		{
			name: "shared invalid is not shared",
			ann:  map[string]string{g: "true", s: "no"},
			want: Annotations{Global: true},
			errs: []string{badBool(s, "no")},
		},
		{
			name: "shared spellings disagree",
			ann:  map[string]string{g: "true", s: "false", sL: "true"},
			want: Annotations{Global: true},
			errs: []string{conflict(s, "false", sL, "true")},
		},
		{
			name: "shared invalid reported without global",
			ann:  map[string]string{s: "yes"},
			want: Annotations{},
			errs: []string{badBool(s, "yes")},
		},
		{name: "affinity local", ann: map[string]string{g: "true", a: "local"}, want: Annotations{Global: true, Shared: true, Affinity: AffinityLocal}},
		{name: "affinity remote mixed case", ann: map[string]string{g: "true", a: "Remote"}, want: Annotations{Global: true, Shared: true, Affinity: AffinityRemote}},
		{name: "affinity none", ann: map[string]string{g: "true", a: "NONE"}, want: global},
		{name: "affinity empty", ann: map[string]string{g: "true", a: ""}, want: global},
		{name: "affinity legacy", ann: map[string]string{g: "true", aL: "LOCAL"}, want: Annotations{Global: true, Shared: true, Affinity: AffinityLocal}},
		{name: "affinity none and empty agree", ann: map[string]string{g: "true", a: "none", aL: ""}, want: global},
		{name: "affinity kept on a global service that is not shared", ann: map[string]string{g: "true", s: "false", a: "remote"}, want: Annotations{Global: true, Affinity: AffinityRemote}},
		{name: "affinity ignored without global", ann: map[string]string{a: "local"}, want: Annotations{}},
		{
			name: "affinity invalid",
			ann:  map[string]string{g: "true", a: "nearest"},
			want: global,
			errs: []string{`service shop/cart: invalid annotation service.cilium.io/affinity="nearest": accepted values are "local", "remote", "none" and "" (any case); fix or remove it`},
		},
		{
			name: "affinity spellings disagree",
			ann:  map[string]string{g: "true", a: "local", aL: "remote"},
			want: global,
			errs: []string{conflict(a, "local", aL, "remote")},
		},
		{
			name: "every problem is reported",
			ann:  map[string]string{g: "yes", gL: "1", s: "maybe", aL: "far"},
			want: Annotations{},
			errs: []string{badBool(g, "yes"), badBool(gL, "1"), badBool(s, "maybe"), badAffinity(aL, "far")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := ParseAnnotations(annotated(tt.ann))
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("ParseAnnotations (-want +got):\n%s", d)
			}
			checkErrors(t, errs, ErrInvalidAnnotation, tt.errs)
		})
	}
}

func TestParseAnnotationsNil(t *testing.T) {
	got, errs := ParseAnnotations(nil)
	if got != (Annotations{}) || errs != nil {
		t.Errorf("ParseAnnotations(nil) = %+v, %v; want zero value, no errors", got, errs)
	}
}

func TestNamespaceExports(t *testing.T) {
	ns := func(ann map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: ann}}
	}
	k := AnnotationNamespaceGlobal
	tests := []struct {
		name    string
		ns      *corev1.Namespace
		def     bool
		want    bool
		wantErr string
	}{
		{name: "absent default true", ns: ns(nil), def: true, want: true},
		{name: "absent default false", ns: ns(map[string]string{"x": "true"}), def: false, want: false},
		{name: "true overrides default", ns: ns(map[string]string{k: "true"}), def: false, want: true},
		{name: "false overrides default", ns: ns(map[string]string{k: "false"}), def: true, want: false},
		{name: "case-insensitive", ns: ns(map[string]string{k: "TrUe"}), def: false, want: true},
		{
			name: "invalid is not exported", ns: ns(map[string]string{k: "yes"}), def: true, want: false,
			wantErr: `namespace shop: invalid annotation clustermesh.cilium.io/global="yes": accepted values are "true" and "false" (any case); fix or remove it`,
		},
		{
			name: "empty is invalid", ns: ns(map[string]string{k: ""}), def: true, want: false,
			wantErr: `namespace shop: invalid annotation clustermesh.cilium.io/global="": accepted values are "true" and "false" (any case); fix or remove it`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NamespaceExports(tt.ns, tt.def)
			if got != tt.want {
				t.Errorf("NamespaceExports = %v, want %v", got, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("error = %v\nwant    %s", err, tt.wantErr)
			case tt.wantErr != "" && !errors.Is(err, ErrInvalidAnnotation):
				t.Errorf("errors.Is(%v, ErrInvalidAnnotation) = false", err)
			}
		})
	}
	t.Run("nil namespace", func(t *testing.T) {
		got, err := NamespaceExports(nil, true)
		if got || err == nil {
			t.Errorf("NamespaceExports(nil, true) = %v, %v; want false and an error", got, err)
		}
	})
}

func TestShouldExport(t *testing.T) {
	tests := []struct {
		a         Annotations
		nsExports bool
		want      bool
	}{
		{Annotations{Global: true, Shared: true}, true, true},
		{Annotations{Global: true, Shared: true, Affinity: AffinityLocal}, true, true},
		{Annotations{Global: true, Shared: true}, false, false},
		{Annotations{Global: true}, true, false},
		{Annotations{Shared: true}, true, false},
		{Annotations{}, true, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v/ns=%v", tt.a, tt.nsExports), func(t *testing.T) {
			if got := ShouldExport(tt.a, tt.nsExports); got != tt.want {
				t.Errorf("ShouldExport = %v, want %v", got, tt.want)
			}
		})
	}
}
