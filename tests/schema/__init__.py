"""Schema tests: the CRDs in crds/, the examples and the bad manifests, judged by the genuine API server."""
