"""The ``llamda`` command: ``llamda serve`` runs every enabled API as one local server;
``llamda ingest`` loads files into a vector store (locally or into a deployed stack);
``llamda eval run`` runs a benchmark on a running stack."""

from __future__ import annotations

import argparse
import sys

from llamda.errors import ConfigError

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _banner(config, url: str) -> str:  # type: ignore[no-untyped-def]
    lines = [f"Llamda serving on {url}  (profile {config.profile}, config {config.source})"]
    lines.append(f"  APIs:      {', '.join(config.apis)}")
    providers = [
        f"{e.provider_id} ({api}/{e.provider_type})"
        for api, entries in config.providers.items()
        for e in entries
    ]
    lines.append(f"  providers: {', '.join(providers) or 'none'}")
    if not any(m.model_type == "llm" for m in config.models):
        hint = "AWS_REGION, OLLAMA_URL, VLLM_URL, TGI_URL, *_API_KEY (see README)"
        lines.append(f"             no chat model: set {hint},")
        lines.append("             or run scripts/serve --with-local (SmolLM2 in-process)")
    models = [f"{m.model_id} [{m.provider_id}]" for m in config.models]
    lines.append(f"  models:    {', '.join(models) or 'none'}")
    lines.append(f"  auth:      {config.server.auth}")
    lines.append(f"  docs:      {url}/docs   openapi: {url}/openapi.json")
    lines.append(
        f"  hosts:     {', '.join(config.server.allowed_hosts)} (+ the bind address; "
        "server.allowed_hosts)"
    )
    if config.server.allowed_origins:
        lines.append(f"  origins:   {', '.join(config.server.allowed_origins)}")
    return "\n".join(lines)


def serve(args: argparse.Namespace) -> int:
    from llamda.config import load_config

    try:
        config = load_config(args.config)
        from llamda.app import create_local_app

        app = create_local_app(config, args.host or config.server.host)
    except ConfigError as exc:
        print(f"llamda: {exc}", file=sys.stderr)
        return 2
    try:
        import uvicorn
    except ImportError:
        print(
            "llamda: the local server needs uvicorn: pip install 'llamda[server]'", file=sys.stderr
        )
        return 2
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    print(_banner(config, f"http://{host}:{port}"), flush=True)
    if config.server.auth == "off" and host not in LOOPBACK:
        print(
            f"\n  WARNING: serving on {host} with auth OFF: anyone who can reach this address "
            "can use every API and your provider credentials.\n  Turn it on with "
            "LLAMDA_AUTH=1 (server.auth: true) and create keys with `llamda keys create`.\n",
            file=sys.stderr,
            flush=True,
        )
    # The asyncio loop, whatever else is installed (uvicorn's "auto" picks uvloop when present;
    # chromadb brings it). Forked document workers are fine on uvloop now (tests/unit/
    # test_documents.py), but on it a client that hangs up mid-stream is not noticed and the
    # upstream stream is never released (test_a_client_that_hangs_up_releases_the_upstream and
    # test_a_stream_cut_short_is_not_stored fail). httptools is used when installed.
    uvicorn.run(
        app, host=host, port=port, log_level=args.log_level, access_log=False, loop="asyncio"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llamda", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the local server with every enabled API")
    run.add_argument("--config", help="run config YAML (default: $LLAMDA_CONFIG or the profile)")
    run.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    run.add_argument("--port", type=int, help="port (default from config: 8321)")
    run.add_argument("--log-level", default="warning", help="uvicorn log level")
    run.set_defaults(func=serve)
    from llamda import cli_eval, cli_ingest, cli_keys

    cli_ingest.add_parser(sub)
    cli_keys.add_parser(sub)
    cli_eval.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"llamda: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
