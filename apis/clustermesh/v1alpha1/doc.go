// Package v1alpha1 is the project's Kubernetes API group clustermesh.io:
// the Identity custom resource in which a cluster's clustermesh-apiserver
// persists the security identities it allocates, so that agents read them
// and restarts keep them.
//
// Rules: an Identity's name is its numeric identity in decimal; its
// securityLabels never change after creation (a different label set is a
// different identity); only the clustermesh-apiserver's leader writes them.
package v1alpha1
