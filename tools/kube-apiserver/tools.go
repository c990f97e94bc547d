//go:build tools

// Package tools records the binary this module builds so `go mod tidy` keeps it.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
