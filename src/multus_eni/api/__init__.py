"""The NodeENI API: CRD schema, spec/status models, validation."""
