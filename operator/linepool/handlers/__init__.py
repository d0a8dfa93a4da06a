"""kopf glue: observe through adapters, decide through logic, act through adapters.

Importing this package registers every handler with kopf's default registry.
"""

from linepool.handlers import indexes, pools, servers, setup

__all__ = ["indexes", "pools", "servers", "setup"]
