package cnistore

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
)

func att(cid string) state.AttachmentRow {
	return state.AttachmentRow{
		Key: datapath.AttachmentKey(cid, "eth0"), ContainerID: cid, IfName: "eth0", NetNS: "/var/run/netns/" + cid,
		HostIfName: "veth" + cid, HostIfIndex: 7, IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}, Namespace: "ns", Pod: "p-" + cid,
	}
}

func TestStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := att("a1"), att("b2")
	for _, x := range []state.AttachmentRow{b, a} {
		if err := s.Put(x); err != nil {
			t.Fatal(err)
		}
	}
	a.HostIfIndex = 9
	if err := s.Put(a); err != nil { // replaces
		t.Fatal(err)
	}
	// Left-overs: an interrupted Put, a corrupt file, a file under the
	// wrong name, an unrelated file.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("{"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{not json"), 0o600))
	moved := att("c3")
	s2 := &Store{dir: t.TempDir()}
	must(s2.Put(moved))
	data, err := os.ReadFile(s2.path(moved.Key))
	must(err)
	must(os.WriteFile(filepath.Join(dir, "other.json"), data, 0o600))
	must(os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o600))

	got, errs, err := s.Load()
	must(err)
	if want := []state.AttachmentRow{a, b}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Load = %+v, want %+v", got, want)
	}
	if len(errs) != 2 || !strings.Contains(errs[0].Error()+errs[1].Error(), "bad.json") || !strings.Contains(errs[0].Error()+errs[1].Error(), "other.json") {
		t.Fatalf("Load errors = %v, want bad.json and other.json reported", errs)
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-123")); !os.IsNotExist(err) {
		t.Fatal("temporary file of an interrupted Put left behind")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.json")); err != nil {
		t.Fatal("a corrupt file must be kept for the operator, not removed")
	}

	must(s.Delete(a.Key))
	must(s.Delete(a.Key)) // absent: fine
	got, _, err = s.Load()
	must(err)
	if len(got) != 1 || got[0].Key != b.Key {
		t.Fatalf("after Delete: %+v", got)
	}
	bad := att("d4")
	bad.Pod = ""
	if err := s.Put(bad); err == nil || !strings.Contains(err.Error(), "namespace and name") {
		t.Fatalf("Put of an attachment without a pod: %v", err)
	}
}
