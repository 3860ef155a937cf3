// Command image builds the clustermesh container image without a container
// runtime (`make image` runs it): it cross-compiles the binaries for each
// platform and packs them with package internal/image into an OCI layout
// and one docker-loadable tarball per platform.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/clustermesh/clustermesh/internal/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	repo := fs.String("repository", image.DefaultRepository, "image repository; the tag is --version")
	version := fs.String("version", "", "version: the image tag and label (required; make passes internal/version/VERSION)")
	commit := fs.String("commit", "", "commit, for the org.opencontainers.image.revision label")
	ldflags := fs.String("ldflags", "", "-ldflags of go build (make passes the version's)")
	binaries := fs.String("binaries", "clustermesh,clustermesh-apiserver,clustermesh-agent,clustermesh-cni", "binaries (./cmd/<name>), comma-separated")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "platforms, comma-separated os/arch[/variant]")
	out := fs.String("out", "_output/image", "output directory: oci/ (the OCI layout), <name>-<os>-<arch>.tar, bin/<os>-<arch>/, digest")
	epoch := fs.String("epoch", os.Getenv("SOURCE_DATE_EPOCH"), "time of every file and of the config, in Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *version == "" {
		return fmt.Errorf("--version is required")
	}
	var secs int64
	if *epoch != "" {
		var err error
		if secs, err = strconv.ParseInt(*epoch, 10, 64); err != nil || secs < 0 {
			return fmt.Errorf("--epoch %q: want Unix seconds >= 0", *epoch)
		}
	}
	opts := image.Options{Repository: *repo, Version: *version, Commit: *commit, Epoch: time.Unix(secs, 0).UTC(),
		Binaries: strings.Split(*binaries, ",")}
	ref, err := opts.Reference()
	if err != nil {
		return err
	}
	var pkgs []string
	for _, b := range opts.Binaries {
		pkgs = append(pkgs, "./cmd/"+b)
	}
	for _, s := range strings.Split(*platforms, ",") {
		p, err := v1.ParsePlatform(s)
		if err != nil || p.OS == "" || p.Architecture == "" {
			return fmt.Errorf("--platforms %q: want os/arch like linux/amd64", s)
		}
		dir := filepath.Join(*out, "bin", p.OS+"-"+p.Architecture+p.Variant)
		start := time.Now()
		if err := image.Compile(ctx, image.CompileOptions{Packages: pkgs, Platform: *p, LDFlags: *ldflags, OutDir: dir}); err != nil {
			return err
		}
		fmt.Printf("built %s for %s in %s\n", strings.Join(opts.Binaries, ", "), p, time.Since(start).Round(time.Second))
		opts.Platforms = append(opts.Platforms, image.PlatformDir{Platform: *p, Dir: dir})
	}
	idx, err := image.Build(opts)
	if err != nil {
		return err
	}
	if err := image.WriteLayout(filepath.Join(*out, "oci"), ref, idx); err != nil {
		return err
	}
	tars, err := image.WriteTarballs(*out, "clustermesh", ref, idx)
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "digest"), []byte(digest.String()+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Printf("image %s@%s\n  OCI layout: %s\n", ref, digest, filepath.Join(*out, "oci"))
	for _, t := range tars {
		fmt.Printf("  tarball:    %s\n", t)
	}
	return nil
}
