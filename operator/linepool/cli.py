"""The ``linepool`` command: ``run`` starts the operator, ``serve`` the placement service, ``plan`` plans
capacity, ``version`` prints the version."""

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta

from linepool import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linepool",
        description="Keeps pools of iMessage lines healthy and within their quotas (a Kubernetes operator).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("version", help="print the version and exit")
    run = commands.add_parser(
        "run", help="run the operator",
        description="Run the operator. It reads the cluster like kubectl: in-cluster config, else KUBECONFIG.",
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; globs like 'team-*' work)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace (the default when no --namespace is given)")
    run.add_argument("--standalone", action="store_true",
                     help="do not use peering: for a single replica, or for development")
    run.add_argument("--peering", default="linepool-operator", metavar="NAME",
                     help="peering object shared by replicas, so that only one acts (default: %(default)s)")
    run.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    run.add_argument("--liveness", metavar="URL",
                     help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve the operator's Prometheus metrics on this port")
    run.add_argument("--metrics-address", default="0.0.0.0", metavar="ADDR",
                     help="address for the metrics port (default: %(default)s)")
    run.add_argument("--log-format", choices=["plain", "full", "json"], default="full",
                     help="log line format (default: %(default)s)")
    run.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    keep_alive = run.add_argument_group("keep-alive delivery")
    keep_alive.add_argument("--messaging-adapter", default="http", metavar="NAME",
                            help="how keep-alive messages are sent: 'http' (built in) or an adapter installed under "
                                 "the 'linepool.messaging' entry point group (default: %(default)s)")
    keep_alive.add_argument("--keep-alive-retry-base", default="30s", type=_duration, metavar="DURATION",
                            help="first wait after a failed send (5xx, timeout); doubles per attempt, "
                                 "capped at 30m (default: %(default)s)")
    keep_alive.add_argument("--keep-alive-answer-delay", default="2m", type=_duration, metavar="DURATION",
                            help="a partner line answers a keep-alive this long to 4x this long after it "
                                 "(default: %(default)s)")
    keep_alive.add_argument("--keep-alive-max-attempts", default=5, type=int, metavar="N",
                            help="attempts per keep-alive before giving up for the day (default: %(default)s)")
    _add_serve(commands)
    _add_plan(commands)
    return parser


def _add_plan(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    # Values are kept as text here and parsed by linepool.handlers.plan, so that `--help` stays instant
    # and every bad value gets the same kind of message and exit code 2.
    plan = commands.add_parser(
        "plan", help="plan capacity: servers, lines and inventory runway for a traffic model",
        description="Simulate a pool hour by hour with the operator's own decisions (assignment, stopAt/resumeAt, "
                    "scale-ups with cooldown, inventory) under a traffic model, and say when it scales, when the "
                    "inventory runs out and how many lines to order by when.",
    )
    source = plan.add_mutually_exclusive_group()
    source.add_argument("-f", "--file", metavar="POOL.yaml",
                        help="a LinePool manifest, optionally with its MessagingServers in the same file")
    source.add_argument("--from-cluster", metavar="NAMESPACE/POOL",
                        help="read the pool and its servers from the cluster, and fit the traffic model to the last "
                             "28 days of its Prometheus history (at least 3)")
    plan.add_argument("--servers", type=int, metavar="N",
                      help="when the file lists no servers: start with N servers from scaling.serverTemplate, "
                           "each with scaling.linesPerServer lines")
    plan.add_argument("--initial-users", type=int, default=0, metavar="N",
                      help="users already on the servers' lines at the start (default: %(default)s)")
    plan.add_argument("--new-users-per-day", metavar="N", help="new users arriving per day, e.g. 200")
    plan.add_argument("--growth", default="0", metavar="RATE",
                      help="growth of the new users per day, e.g. 5%%/week or 1%%/day (default: %(default)s)")
    plan.add_argument("--churn", default="0", metavar="RATE",
                      help="share of the users leaving, e.g. 2%%/week (default: %(default)s)")
    plan.add_argument("--messages-per-user-per-day", metavar="N", help="messages each user's line sends a day")
    plan.add_argument("--inbound-first", default="100%", metavar="SHARE",
                      help="share of new users who write first (default: %(default)s)")
    plan.add_argument("--days", type=int, default=90, metavar="N", help="days to plan, 1 to 730 (default: %(default)s)")
    plan.add_argument("--lead-time", metavar="DURATION",
                      help="how long a new line takes to provision (default: the pool's spec.forecast.leadTime, 7d "
                           "unless set)")
    plan.add_argument("--plot", metavar="FILE.png", help="also draw the plan to this PNG file (needs matplotlib)")
    plan.add_argument("--output", choices=["table", "json"], default="table",
                      help="print a table or JSON (default: %(default)s)")


def _add_serve(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    serve = commands.add_parser(
        "serve", help="run the placement service (gives each new user of an app a line)",
        description="Run the placement service: an HTTP API that places users on a pool's lines round-robin, "
                    "within each line's daily budget, and keeps them there. It reads the pools like kubectl: "
                    "in-cluster config, else KUBECONFIG. API reference: GET /openapi.json.",
    )
    serve.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                       help="address to serve the API, /healthz, /readyz and /metrics on (default: %(default)s)")
    serve.add_argument("--database", metavar="URL",
                       help="where placements are kept: sqlite:///FILE (one replica) or "
                            "postgresql://USER:PASSWORD@HOST:PORT/DB (several replicas); default: "
                            "$LINEPOOL_DATABASE_URL, else sqlite:///placements.db")
    serve.add_argument("--token-file", metavar="FILE",
                       help="accept the bearer tokens listed in FILE, one per line, each allowed everything; "
                            "without it, tokens are checked with TokenReview and SubjectAccessReview "
                            "(RBAC on linepools/placements)")
    serve.add_argument("--public-url", metavar="URL",
                       help="the base URL end users reach the service at, for short links, QR codes and "
                            "contact cards (default: http://HOST:PORT of --listen)")
    scope = serve.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="serve the pools of this namespace (repeatable; globs like 'team-*' work)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="serve every namespace's pools (the default when no --namespace is given)")
    serve.add_argument("--log-format", choices=["plain", "full", "json"], default="full",
                       help="log line format (default: %(default)s)")
    serve.add_argument("-v", "--verbose", action="store_true", help="log at debug level")


def _duration(text: str) -> timedelta:
    from linepool.api.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    # Imported here so that `linepool --help` and `linepool version` stay instant.
    import kopf
    from prometheus_client import start_http_server

    import linepool.handlers  # noqa: F401  (registers the handlers)
    from linepool import telemetry  # noqa: F401  (registers the metrics)
    from linepool.adapters.messaging import check_adapter
    from linepool.handlers.setup import set_options
    from linepool.process import tune_garbage_collector

    set_options(messaging_adapter=args.messaging_adapter, retry_base=args.keep_alive_retry_base,
                max_attempts=max(1, args.keep_alive_max_attempts), answer_delay=args.keep_alive_answer_delay)
    # Fail at start-up, not at the first send, when the adapter is not installed.
    try:
        check_adapter(args.messaging_adapter)
    except ValueError as exc:
        print(f"linepool run: --messaging-adapter: {exc}", file=sys.stderr)
        return 2
    tune_garbage_collector()
    log_format = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
    kopf.configure(verbose=args.verbose, log_format=log_format[args.log_format])
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    clusterwide = args.all_namespaces or not args.namespace
    kopf.run(
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        priority=args.priority,
        clusterwide=clusterwide,
        namespaces=[] if clusterwide else args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


def serve(args: argparse.Namespace) -> int:
    import logging
    import os

    from linepool.handlers.placement_service import ServeOptions, build_service
    from linepool.handlers.placement_service import serve as run_service
    from linepool.process import configure_logging, tune_garbage_collector

    configure_logging(log_format=args.log_format, verbose=args.verbose)
    # A pool of 10,000 lines is tens of thousands of long-lived objects; collecting young ones
    # less often keeps the collector's pauses out of the placements' tail latency.
    tune_garbage_collector()
    options = ServeOptions(
        listen=args.listen,
        database=args.database or os.environ.get("LINEPOOL_DATABASE_URL") or "sqlite:///placements.db",
        token_file=args.token_file, namespaces=() if args.all_namespaces else tuple(args.namespace),
        public_url=args.public_url, log_level="debug" if args.verbose else "info",
    )
    # Bad flags fail at once, with the flag named, rather than after the server is up.
    try:
        service = build_service(options=options)  # parses --listen and --database too
    except ValueError as exc:
        print(f"linepool serve: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the cluster's configuration cannot be loaded
        logging.getLogger("linepool").debug("start-up failed", exc_info=True)
        print(f"linepool serve: cannot reach the cluster's configuration: {exc}", file=sys.stderr)
        return 2
    return run_service(service=service, options=options)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"linepool-operator {__version__}")
        return 0
    if args.command == "run":
        return run(args)
    if args.command == "serve":
        return serve(args)
    if args.command == "plan":
        from linepool.handlers.plan import plan

        return plan(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
