"""
The local sandbox: stand-ins for a Kubernetes cluster, a Prometheus server and a fleet.

It exists so that ``make demo`` and the integration tests can run the real operator
end to end on one machine, with no cluster, no Docker and no internet:

* :mod:`linepool.sandbox.apiserver` — an in-memory Kubernetes API server (kmock-based)
  that behaves like a real one where kopf and the ``kubernetes`` client care.
* :mod:`linepool.sandbox.selectors` and :mod:`linepool.sandbox.patches` — the pure
  label/field-selector and patch semantics that the API server relies on.
* :mod:`linepool.sandbox.prometheus` — a real Prometheus process, managed by PID.
* :mod:`linepool.sandbox.fleet` — simulated messaging servers exporting the metrics
  contract, plus a stub of a messaging server's HTTP API.

The operator itself never imports this package (enforced by import-linter);
nothing is imported eagerly here so that importing one tool does not drag in the others.
"""
