"""Schema tests: the CRDs in crds/, the examples and the bad manifests, checked without an API server."""
