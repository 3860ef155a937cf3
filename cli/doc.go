// Package cli is the `clustermesh` command line: connect, disconnect,
// status and install, against kubeconfig contexts as kubectl uses them.
// cmd/clustermesh is its thin main.
//
// Rules: commands write to cmd.OutOrStdout()/ErrOrStderr(), never to the
// process's streams directly; every read command takes -o text|json|yaml;
// every error names the input at fault and the fix.
package cli
