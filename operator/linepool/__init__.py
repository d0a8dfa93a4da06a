"""linepool-operator: keeps pools of iMessage lines healthy and within their quotas.

The package is layered, and import-linter enforces the layers (see pyproject.toml):
``api`` (typed spec/status models, no I/O) <- ``logic`` (pure decisions) <-
``adapters`` (all network I/O) <- ``handlers`` (kopf glue) <- ``cli``.
"""

__version__ = "0.1.0"
