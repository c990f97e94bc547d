//go:build tools

// Package tools records the binary this module builds so `go mod tidy` keeps it.
package tools

import _ "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus"
