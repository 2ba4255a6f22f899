// Package shim exposes the upstream provider's constructor.
package shim

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"
	tls "github.com/hashicorp/terraform-provider-tls/internal/provider"
)

// NewProvider returns the Terraform TLS provider.
func NewProvider() provider.Provider { return tls.New() }
