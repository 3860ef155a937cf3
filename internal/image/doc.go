// Package image builds the container image of clustermesh without a
// container runtime: one OCI image holding every binary, for linux/amd64
// and linux/arm64, under one image index, written as an OCI layout (and a
// docker-loadable tarball per architecture).
//
// Rules:
//   - Same input, same digest. Layers are tar streams written here with
//     sorted entries, a fixed modification time (Options.Epoch), owner
//     root:root and no user or group names, compressed with Go's gzip;
//     the config's created time is the same fixed time. Nothing reads the
//     clock or the file system's metadata (but the binaries' contents).
//   - The image has no base: the binaries are static (CGO_ENABLED=0) and
//     exec nothing. It holds /usr/local/bin/<binary> (one layer each),
//     /etc/passwd and /etc/group naming root, and /tmp.
//   - Compiling is the caller's: Compile runs `go build` for one platform;
//     Build only packs what it is given.
//   - Unpack refuses entries that would leave the target directory.
package image
