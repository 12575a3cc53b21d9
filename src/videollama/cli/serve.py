"""`videollama serve`: an OpenAI-compatible HTTP API (`/v1/chat/completions`, `/v1/models`, `/health`, `/docs`).

Listens on 127.0.0.1 by default. Media is given as content parts (`video_url`, `image_url`, `audio_url`) whose
URL is a path inside --media-root, a file:// URL inside it, or a base64 data: URL; http(s) URLs only with
--allow-remote-urls. Without --model a tiny random model is built (for smoke tests: its answers are noise).
Needs the `serve` extra: pip install 'videollama[serve]'.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="serve an OpenAI-compatible HTTP API", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: a tiny random model)")
    p.add_argument("--model-name", default=None, help="model id clients send (default: the folder name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--media-root", type=Path, default=None,
                   help="folder clients may reference media in (default: none, only data: URLs)")
    p.add_argument("--allow-remote-urls", action="store_true", help="let the server download http(s) media URLs")
    p.add_argument("--api-key", default=os.environ.get("VIDEOLLAMA_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $VIDEOLLAMA_API_KEY, else no auth)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="request body limit (default 64)")
    p.add_argument("--max-media-mb", type=float, default=256.0, help="downloaded media limit (default 256)")
    p.add_argument("--max-media-seconds", type=float, default=600.0,
                   help="longest video/audio accepted, 0 = no limit (default 600)")
    p.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens a request may ask for")
    p.add_argument("--max-concurrent", type=int, default=1,
                   help="requests processed at once (generation itself is one at a time; default 1)")
    p.add_argument("--queue-size", type=int, default=8, help="requests waiting beyond that, then 429 (default 8)")
    p.add_argument("--request-timeout", type=float, default=300.0, help="seconds per request, then 504")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from videollama.serving.openai_api import ServerConfig, create_app
    except ImportError as exc:
        print(f"error: {exc.name} is missing; install the serve extra: pip install 'videollama[serve]'",
              file=sys.stderr)
        return 2
    import videollama.inference.pipeline as pipeline
    from videollama.errors import ConfigError

    for flag in ("max_concurrent", "port", "max_tokens"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.queue_size < 0 or args.request_timeout <= 0 or args.max_body_mb <= 0:
        raise ConfigError("--queue-size must be >= 0, --request-timeout and --max-body-mb > 0")
    if args.media_root is not None and not args.media_root.is_dir():
        raise ConfigError(f"--media-root {args.media_root}: not a folder")
    if not _is_loopback(args.host) and not args.api_key:
        print(f"warning: listening on {args.host} without an API key: anyone who can reach it can use the model",
              file=sys.stderr)
    pipe = pipeline.load(args.model, device=args.device)
    name = args.model_name or (args.model.resolve().name if args.model else "videollama-tiny-random")
    config = ServerConfig(
        model_name=name, media_root=args.media_root.resolve() if args.media_root else None,
        allow_remote_urls=args.allow_remote_urls, api_key=args.api_key or None, max_body_mb=args.max_body_mb,
        max_media_mb=args.max_media_mb, max_media_seconds=args.max_media_seconds, max_tokens=args.max_tokens,
        max_concurrent=args.max_concurrent, queue_size=args.queue_size, request_timeout=args.request_timeout,
    )
    app = create_app(pipe, config)
    print(f"serving {name!r} on http://{args.host}:{args.port}/v1 (docs: /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
