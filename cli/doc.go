// Package cli is the `clustermesh` command line: connect, disconnect,
// status, install and observe, against kubeconfig contexts as kubectl uses
// them. cmd/clustermesh is its thin main.
//
// Rules: commands write to cmd.OutOrStdout()/ErrOrStderr(), never to the
// process's streams directly; every read command takes -o text|json|yaml,
// but observe, whose output is a stream of flows: -o compact|json|table
// (JSON one object per line); every error names the input at fault and the
// fix.
package cli
