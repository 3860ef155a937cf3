package identity

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustLayout(t *testing.T, max uint32) Layout {
	t.Helper()
	l, err := NewLayout(max)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewLayout(t *testing.T) {
	type shape struct {
		ClusterBits, LocalBits uint
		MaxCluster             ClusterID
		MaxLocal, MaxConnected uint32
	}
	tests := []struct {
		max  uint32
		want shape
	}{
		{255, shape{8, 16, 255, 65535, 255}},
		{511, shape{9, 15, 511, 32767, 511}},
	}
	for _, tt := range tests {
		l := mustLayout(t, tt.max)
		got := shape{l.ClusterIDBits(), l.LocalBits(), l.MaxClusterID(), l.MaxLocal(), l.MaxConnectedClusters()}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("layout %d (-want +got):\n%s", tt.max, d)
		}
	}
	if (Layout{}) != mustLayout(t, 255) {
		t.Error("zero Layout is not the 255 layout")
	}
	for _, bad := range []uint32{0, 1, 127, 254, 256, 510, 512, 1023} {
		_, err := NewLayout(bad)
		if err == nil || !strings.Contains(err.Error(), "must be 255 or 511") {
			t.Errorf("NewLayout(%d): err = %v, want one naming 255 and 511", bad, err)
		}
	}
}

func TestLayoutRanges(t *testing.T) {
	tests := []struct {
		max         uint32
		c           ClusterID
		first, last NumericIdentity
	}{
		{255, 0, 0, 0xFFFF},
		{255, 1, 0x10000, 0x1FFFF},
		{255, 2, 0x20000, 0x2FFFF},
		{255, 255, 0xFF0000, 0xFFFFFF},
		{511, 0, 0, 0x7FFF},
		{511, 1, 0x8000, 0xFFFF},
		{511, 2, 0x10000, 0x17FFF},
		{511, 511, 0xFF8000, 0xFFFFFF},
	}
	for _, tt := range tests {
		l := mustLayout(t, tt.max)
		first, last := l.Range(tt.c)
		if first != tt.first || last != tt.last {
			t.Errorf("layout %d Range(%d) = [%#x, %#x], want [%#x, %#x]", tt.max, tt.c, first, last, tt.first, tt.last)
		}
		for _, id := range []NumericIdentity{first, last} {
			if got := l.ClusterOf(id); got != tt.c {
				t.Errorf("layout %d ClusterOf(%#x) = %d, want %d", tt.max, id, got, tt.c)
			}
			if !l.Owns(tt.c, id) {
				t.Errorf("layout %d Owns(%d, %#x) = false", tt.max, tt.c, id)
			}
		}
		if first > 0 && l.Owns(tt.c, first-1) {
			t.Errorf("layout %d Owns(%d, %#x) = true (before range)", tt.max, tt.c, first-1)
		}
		if l.Owns(tt.c, last+1) {
			t.Errorf("layout %d Owns(%d, %#x) = true (after range)", tt.max, tt.c, last+1)
		}
	}
}

func TestLayoutMake(t *testing.T) {
	for _, max := range []uint32{255, 511} {
		l := mustLayout(t, max)
		mc := l.MaxClusterID()
		ml := l.MaxLocal()
		ok := []struct {
			c     ClusterID
			local uint32
		}{
			{1, 1}, {1, ml}, {mc, 1}, {mc, ml}, {2, 12345 % ml}, {0, 256}, {0, ml},
		}
		for _, tt := range ok {
			id, err := l.Make(tt.c, tt.local)
			if err != nil {
				t.Errorf("layout %d Make(%d, %d): %v", max, tt.c, tt.local, err)
				continue
			}
			if l.ClusterOf(id) != tt.c || l.LocalOf(id) != tt.local || !l.Owns(tt.c, id) {
				t.Errorf("layout %d Make(%d, %d) = %#x: ClusterOf %d, LocalOf %d", max, tt.c, tt.local, id, l.ClusterOf(id), l.LocalOf(id))
			}
			if IsReserved(id) || id > MaxNumericIdentity {
				t.Errorf("layout %d Make(%d, %d) = %d is reserved or too wide", max, tt.c, tt.local, id)
			}
		}
		first, _ := l.Range(1)
		if id, _ := l.Make(1, 1); id != first+1 {
			t.Errorf("layout %d Make(1,1) = %#x, want %#x", max, id, first+1)
		}
		if id, _ := l.Make(mc, ml); id != MaxNumericIdentity {
			t.Errorf("layout %d Make(max, max) = %#x, want %#x", max, id, MaxNumericIdentity)
		}
		bad := []struct {
			c       ClusterID
			local   uint32
			wantErr string
		}{
			{1, 0, "local part 0 out of range"},
			{1, ml + 1, "out of range"},
			{mc + 1, 1, "cluster ID above"},
			{1 << 30, 1, "cluster ID above"},
			{0, 0, "use 256.."},
			{0, 255, "use 256.."},
			{1, 1 << 31, "out of range"},
		}
		for _, tt := range bad {
			if _, err := l.Make(tt.c, tt.local); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("layout %d Make(%d, %d): err = %v, want %q", max, tt.c, tt.local, err, tt.wantErr)
			}
		}
		// Out-of-range clusters own nothing.
		if f, la := l.Range(mc + 1); f <= la || l.Owns(mc+1, 0) || l.Owns(mc+1, 1) {
			t.Errorf("layout %d Range(%d) = [%d, %d], want empty", max, mc+1, f, la)
		}
	}
}

func TestClusterOfRoundTripAll(t *testing.T) {
	for _, max := range []uint32{255, 511} {
		l := mustLayout(t, max)
		for c := ClusterID(1); c <= l.MaxClusterID(); c++ {
			for _, local := range []uint32{1, 2, l.MaxLocal() / 2, l.MaxLocal()} {
				id, err := l.Make(c, local)
				if err != nil {
					t.Fatalf("layout %d Make(%d, %d): %v", max, c, local, err)
				}
				if got := l.ClusterOf(id); got != c {
					t.Fatalf("layout %d ClusterOf(Make(%d, %d)) = %d", max, c, local, got)
				}
			}
		}
	}
}

func TestValidateClusterID(t *testing.T) {
	tests := []struct {
		max     uint32
		c       ClusterID
		wantErr bool
	}{
		{255, 0, true}, {255, 1, false}, {255, 255, false}, {255, 256, true}, {255, 511, true},
		{511, 0, true}, {511, 1, false}, {511, 256, false}, {511, 511, false}, {511, 512, true},
	}
	for _, tt := range tests {
		err := mustLayout(t, tt.max).ValidateClusterID(tt.c)
		if (err != nil) != tt.wantErr {
			t.Errorf("layout %d ValidateClusterID(%d) = %v, wantErr %v", tt.max, tt.c, err, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), tt.c.String()) {
			t.Errorf("error %q does not name cluster ID %d", err, tt.c)
		}
	}
}

func TestValidateClusterName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{"a", ""},
		{"default", ""},
		{"cluster-1", ""},
		{"1", ""},
		{"0abc-9", ""},
		{strings.Repeat("a", 32), ""},
		{strings.Repeat("a", 33), "at most 32"},
		{"", "lowercase"},
		{"-a", "lowercase"},
		{"a-", "lowercase"},
		{"Cluster", "lowercase"},
		{"a_b", "lowercase"},
		{"a.b", "lowercase"},
		{"a b", "lowercase"},
		{"é", "lowercase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateClusterName(tt.name)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("ValidateClusterName(%q): %v", tt.name, err)
				}
				return
			}
			checkErr(t, err, tt.wantErr, tt.name)
		})
	}
}
