"""Typed models of the linepool.dev/v1alpha1 API: spec parsing and validation, status shapes.

Nothing in this package does I/O; it turns raw Kubernetes objects into typed values and back.
"""

GROUP = "linepool.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
POOLS = "linepools"
SERVERS = "messagingservers"

POOL_LABEL = f"{GROUP}/pool"
ASSIGNABLE_LABEL = f"{GROUP}/assignable"
CREATED_BY_ANNOTATION = f"{GROUP}/created-by"
PAUSED_ANNOTATION = f"{GROUP}/paused"
OPERATOR_NAME = "linepool-operator"
