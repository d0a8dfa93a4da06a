"""The only code that talks to the network: Prometheus and the Kubernetes API.

Each adapter maps every failure it can meet to one exception type of its own, so callers
handle "Prometheus is unavailable" or "the API server refused" without knowing transports.
"""
