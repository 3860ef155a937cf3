package bpfdp

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// Versions before the datapath's List returned only what the kernel holds
// pinned two companion maps that no BPF program reads, in pinDir + "-meta"
// (the bpf package owns everything under its pin directory):
//   - cm_records: records of services, policies and attachments as given;
//   - cm_clusters: the cluster names that ipcache entries' Flags indexed.
//
// Nothing reads them any more; removing their pins frees them.
var legacyPins = []string{"cm_records", "cm_clusters"}

// legacyMetaDir is where versions before this one pinned their companion
// maps, for pinDir.
func legacyMetaDir(pinDir string) string { return pinDir + "-meta" }

// removeLegacyPins removes the companion maps an older version pinned for
// pinDir, and their directory once empty. It is best effort: a failure is
// logged, the datapath works without it.
func removeLegacyPins(pinDir string, log *slog.Logger) {
	dir := legacyMetaDir(pinDir)
	for _, name := range legacyPins {
		path := filepath.Join(dir, name)
		switch err := os.Remove(path); {
		case err == nil:
			log.Info("removed the pin of a map older versions of the datapath kept", "pin", path)
		case !errors.Is(err, fs.ErrNotExist):
			log.Warn("could not remove the pin of a map older versions of the datapath kept; remove it by hand", "pin", path, "error", err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("could not remove the directory of pins older versions of the datapath kept", "dir", dir, "error", err)
	}
}
