"""The `tokenwire` command: `serve`, `plugins`, `prepare`."""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import logging.config
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tokenwire.config import ServeConfig, parse_middleware_option, parse_option
from tokenwire.interfaces import Backend, MiddlewareFactory
from tokenwire.logs import logging_config
from tokenwire.plugins import KINDS, PluginError, list_plugins, load_plugin
from tokenwire.stores.stream_store import StreamStoreError


def build_backend(config: ServeConfig) -> Backend:
    """Instantiate the configured backend plugin with its options."""
    factory = load_plugin("backends", config.backend)
    options: dict[str, Any] = dict(config.backend_options)
    if config.model is not None:
        options["model"] = config.model
    try:
        backend = factory(**options)  # type: ignore[operator]
    except TypeError as exc:
        raise PluginError(f"backend {config.backend!r} rejected its options: {exc}") from exc
    return backend  # type: ignore[no-any-return]


def build_middlewares(config: ServeConfig) -> tuple[MiddlewareFactory, ...]:
    """The configured middleware plugins, each with its options bound.

    Options are checked against the middleware's signature here, so a misspelt one fails
    startup naming the middleware rather than deep inside app construction.
    """
    unknown = sorted(set(config.middleware_options) - set(config.middlewares))
    if unknown:
        raise PluginError(
            f"options given for middleware(s) {', '.join(unknown)}, which are not enabled "
            f"(enabled: {', '.join(config.middlewares) or 'none'})"
        )
    factories: list[MiddlewareFactory] = []
    for name in config.middlewares:
        factory: MiddlewareFactory = load_plugin("middlewares", name)  # type: ignore[assignment]
        options = config.middleware_options.get(name, {})
        if options:
            try:
                inspect.signature(factory).bind(None, **options)
            except TypeError as exc:
                raise PluginError(f"middleware {name!r} rejected its options: {exc}") from exc
            factory = functools.partial(factory, **options)
        factories.append(factory)
    return tuple(factories)


def load_config(args: argparse.Namespace) -> ServeConfig:
    """Defaults, then the config file, then `TOKENWIRE_API_KEYS`, then flags."""
    config = ServeConfig.from_file(args.config) if args.config else ServeConfig()
    options = dict(config.backend_options)
    options.update(parse_option(o) for o in args.backend_option)
    middleware_options = {name: dict(o) for name, o in config.middleware_options.items()}
    for text in args.middleware_option:
        name, key, value = parse_middleware_option(text)
        middleware_options.setdefault(name, {})[key] = value
    env_keys = tuple(
        k.strip() for k in os.environ.get("TOKENWIRE_API_KEYS", "").split(",") if k.strip()
    )
    return config.override(
        backend=args.backend,
        model=args.model,
        host=args.host,
        port=args.port,
        middlewares=tuple(args.middleware) if args.middleware else None,
        log_level=args.log_level,
        log_format=args.log_format,
        backend_options=options,
        middleware_options=middleware_options,
        drain_grace=args.drain_grace,
        shutdown_timeout=args.shutdown_timeout,
        api_keys=(config.api_keys + env_keys + tuple(args.api_key)) or None,
        cors_origins=tuple(args.cors_origin) or None,
        max_body_bytes=args.max_body_bytes,
        max_tokens=args.max_tokens,
        max_concurrent_per_key=args.max_concurrent_per_key,
        metrics_public=False if args.private_metrics else None,
        playground=False if args.no_playground else None,
        resume_grace=args.resume_grace,
        response_ttl=args.response_ttl,
        response_store_bytes=args.response_store_bytes,
        stream_store=args.stream_store or os.environ.get("TOKENWIRE_STREAM_STORE") or None,
        failover=False if args.no_failover else None,
        slow_client_policy=args.slow_client_policy,
        send_timeout_seconds=args.send_timeout,
        send_buffer_bytes=args.send_buffer_bytes,
        early_headers_after=args.early_headers_after,
        keepalive_seconds=args.keepalive,
    )


def _serve(args: argparse.Namespace) -> int:
    from tokenwire.app import DEFAULT_PUBLIC_PATHS, create_app
    from tokenwire.server import run_server
    from tokenwire.stores.response_store import ResponseStoreConfig
    from tokenwire.stores.stream_store import ResumeConfig

    config = load_config(args)
    resume = None
    if config.resume_grace is not None or config.stream_store is not None:
        resume = ResumeConfig(store=config.stream_store, failover=config.failover)
        if config.resume_grace is not None:
            resume = replace(resume, grace_seconds=config.resume_grace)
    if config.stream_store is not None:
        from tokenwire.stores.redis_connection import check_reachable

        check_reachable(config.stream_store)  # a clear startup error, not a first-stream one
    log_config = logging_config(config.log_level, json_lines=config.log_format == "json")
    logging.config.dictConfig(log_config)
    public_paths = [p for p in DEFAULT_PUBLIC_PATHS if config.metrics_public or p != "/metrics"]
    app = create_app(
        build_backend(config),
        middlewares=build_middlewares(config),
        limits=config.limits(),
        api_keys=config.api_keys,
        public_paths=public_paths,
        cors_origins=config.cors_origins,
        keepalive_seconds=config.keepalive_seconds,
        early_headers_after=config.early_headers_delay(),
        playground=config.playground,
        resume=resume,
        responses=(
            ResponseStoreConfig(
                ttl_seconds=config.response_ttl,
                max_response_bytes=min(4 << 20, config.response_store_bytes),
                max_total_bytes=config.response_store_bytes,
            )
            if config.response_ttl > 0
            else None
        ),
    )
    run_server(
        app,
        host=config.host,
        port=config.port,
        log_config=log_config,
        drain_grace=config.drain_grace,
        shutdown_timeout=config.shutdown_timeout,
    )
    return 0


def _plugins(args: argparse.Namespace) -> int:
    for kind in KINDS:
        print(f"{kind}:")
        for name, target in list_plugins(kind).items():
            print(f"  {name:<20} {target}")
    return 0


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _delay_seconds(text: str) -> float:
    """Seconds >= 0, or "off" (infinity: never)."""
    if text.strip().lower() == "off":
        return math.inf
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0 or 'off'")
    return value


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenwire", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve a model over HTTP, SSE and WebSocket")
    serve.add_argument("--backend", help="backend plugin name or module:attr (default: onnx)")
    serve.add_argument("--model", help="model for the backend (onnx: a prepared model directory)")
    serve.add_argument("--host", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default: 8000; 0 picks a free one)")
    serve.add_argument(
        "--middleware",
        action="append",
        default=[],
        metavar="NAME",
        help="stream middleware, outermost first; repeatable",
    )
    serve.add_argument(
        "--middleware-option",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="middleware constructor option, e.g. cancellation.default_timeout=60; repeatable",
    )
    serve.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend constructor option, e.g. max_batch=16; repeatable",
    )
    serve.add_argument(
        "--drain-grace",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM, how long running streams may take to finish (default: 20)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        metavar="SECONDS",
        help="after draining, how long uvicorn waits for connections to close (default: 5)",
    )
    serve.add_argument("--config", type=Path, help="TOML config file; flags override it")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept this API key (repeatable; also TOKENWIRE_API_KEYS, comma-separated)",
    )
    serve.add_argument("--private-metrics", action="store_true", help="/metrics needs a key too")
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from this origin (repeatable; CORS is off by default)",
    )
    serve.add_argument("--max-body-bytes", type=int, help="larger bodies get 413 (default: 4 MiB)")
    serve.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="most tokens a request may ask for, and the budget of one that names none "
        "(default: 4096; 0: no cap, the context decides)",
    )
    serve.add_argument(
        "--max-concurrent-per-key", type=int, metavar="N", help="running requests per API key"
    )
    serve.add_argument(
        "--resume-grace",
        type=float,
        metavar="SECONDS",
        help="make SSE streams resumable; a dropped stream lives this long (default: off)",
    )
    serve.add_argument(
        "--response-ttl",
        type=float,
        metavar="SECONDS",
        help="how long stored Responses-API responses (store, previous_response_id, "
        "background) are kept (default: 3600; 0: storing off)",
    )
    serve.add_argument(
        "--response-store-bytes",
        type=int,
        metavar="N",
        help="bytes of stored responses kept in all, least recently used dropped first "
        "(default: 256 MiB)",
    )
    serve.add_argument(
        "--stream-store",
        metavar="URL",
        help="keep resumable streams in Redis (redis://… or rediss://…; needs tokenwire[redis]) "
        "so any replica resumes and cancels them; implies resume "
        "(also TOKENWIRE_STREAM_STORE; default: this process only)",
    )
    serve.add_argument(
        "--no-failover",
        action="store_true",
        help="with --stream-store, do not record streams' tokens for another replica to "
        "continue them when their owner dies (saves a write per flush)",
    )
    serve.add_argument(
        "--slow-client-policy",
        choices=["coalesce", "disconnect"],
        help="a client reading slower than tokens arrive: merge its deltas (default) or end "
        "its stream after --send-timeout",
    )
    serve.add_argument(
        "--send-timeout",
        type=float,
        metavar="SECONDS",
        help="with --slow-client-policy disconnect: how long one write may wait (default: 30)",
    )
    serve.add_argument(
        "--send-buffer-bytes",
        type=int,
        metavar="N",
        help="bytes a stream may hold for a slow client (default: 65536)",
    )
    serve.add_argument(
        "--keepalive",
        type=_positive_seconds,
        metavar="SECONDS",
        help="idle seconds before a stream sends a keep-alive (default: 15); keep it below "
        "every proxy's idle timeout",
    )
    serve.add_argument(
        "--early-headers-after",
        type=_delay_seconds,
        metavar="SECONDS",
        help="an admitted request that waits this long for its first token gets its headers "
        "and keep-alives at once (0: at admission; 'off': never; default: 1)",
    )
    serve.add_argument("--no-playground", action="store_true", help="do not serve the page at /")
    serve.set_defaults(handler=_serve)

    plugins = commands.add_parser("plugins", help="list installed plugins")
    plugins.set_defaults(handler=_plugins)

    try:
        from tokenwire.prepare.command import add_prepare_command  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # the prepare package is part of tokenwire; this guards partial installs
        pass
    else:
        add_prepare_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = make_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (PluginError, ValueError, FileNotFoundError, StreamStoreError) as exc:
        print(f"tokenwire: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
