package identity

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseNumericIdentity(t *testing.T) {
	tests := []struct {
		in      string
		want    NumericIdentity
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1", want: ReservedHost},
		{in: "256", want: 256},
		{in: "65536", want: 65536},
		{in: "16777215", want: MaxNumericIdentity},
		{in: "", wantErr: "empty"},
		{in: "16777216", wantErr: "24-bit"},
		{in: "4294967296", wantErr: "24-bit"},
		{in: "99999999999999999999999", wantErr: "24-bit"},
		{in: "+1", wantErr: "not a decimal digit"},
		{in: "-1", wantErr: "not a decimal digit"},
		{in: " 1", wantErr: "not a decimal digit"},
		{in: "1 ", wantErr: "not a decimal digit"},
		{in: "0x10", wantErr: "not a decimal digit"},
		{in: "1e3", wantErr: "not a decimal digit"},
		{in: "01", wantErr: "leading zero"},
		{in: "00", wantErr: "leading zero"},
		{in: "١", wantErr: "not a decimal digit"}, // Arabic-Indic digit one
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseNumericIdentity(tt.in)
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr, tt.in)
				return
			}
			if err != nil {
				t.Fatalf("ParseNumericIdentity(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseNumericIdentity(%q) = %d, want %d", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestReserved(t *testing.T) {
	tests := []struct {
		id     NumericIdentity
		name   string
		labels []Label
	}{
		{IdentityUnknown, "unknown", nil},
		{ReservedHost, "host", []Label{{"reserved", "host", ""}}},
		{ReservedWorld, "world", []Label{{"reserved", "world", ""}}},
		{ReservedUnmanaged, "unmanaged", []Label{{"reserved", "unmanaged", ""}}},
		{ReservedHealth, "health", []Label{{"reserved", "health", ""}}},
		{ReservedInit, "init", []Label{{"reserved", "init", ""}}},
		{ReservedRemoteNode, "remote-node", []Label{{"reserved", "remote-node", ""}}},
		{ReservedKubeAPIServer, "kube-apiserver", []Label{{"reserved", "kube-apiserver", ""}}},
		{ReservedIngress, "ingress", []Label{{"reserved", "ingress", ""}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.id != NumericIdentity(i) {
				t.Errorf("%s = %d, want %d", tt.name, tt.id, i)
			}
			if !IsReserved(tt.id) {
				t.Errorf("IsReserved(%d) = false", tt.id)
			}
			name, ok := ReservedName(tt.id)
			if !ok || name != tt.name {
				t.Errorf("ReservedName(%d) = %q, %v; want %q", tt.id, name, ok, tt.name)
			}
			id, ok := LookupReservedByName(tt.name)
			if !ok || id != tt.id {
				t.Errorf("LookupReservedByName(%q) = %d, %v; want %d", tt.name, id, ok, tt.id)
			}
			got := ReservedLabels(tt.id).Slice()
			if d := cmp.Diff(tt.labels, got); d != "" && len(tt.labels)+len(got) > 0 {
				t.Errorf("ReservedLabels(%d) (-want +got):\n%s", tt.id, d)
			}
		})
	}
	if got := ReservedLabels(ReservedHost).String(); got != "reserved:host" {
		t.Errorf("ReservedLabels(host) = %q", got)
	}
}

func TestReservedRange(t *testing.T) {
	tests := []struct {
		id           NumericIdentity
		wantReserved bool
		wantNamed    bool
	}{
		{9, true, false},
		{100, true, false},
		{255, true, false},
		{256, false, false},
		{65536, false, false},
		{MaxNumericIdentity, false, false},
		{1 << 24, false, false},
	}
	for _, tt := range tests {
		if got := IsReserved(tt.id); got != tt.wantReserved {
			t.Errorf("IsReserved(%d) = %v, want %v", tt.id, got, tt.wantReserved)
		}
		if _, ok := ReservedName(tt.id); ok != tt.wantNamed {
			t.Errorf("ReservedName(%d) ok = %v, want %v", tt.id, ok, tt.wantNamed)
		}
		if ReservedLabels(tt.id).Len() != 0 {
			t.Errorf("ReservedLabels(%d) not empty", tt.id)
		}
	}
	for _, name := range []string{"", "Host", "world-ipv4", "reserved:host"} {
		if id, ok := LookupReservedByName(name); ok {
			t.Errorf("LookupReservedByName(%q) = %d, true", name, id)
		}
	}
}
