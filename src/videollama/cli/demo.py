"""`videollama demo`: the web demo (Gradio) — upload a video, an image or an audio file and chat about it.

Serves on loopback (http://127.0.0.1:7860) by default; there is no public share link. Gradio's analytics are
off. Needs the `demo` extra: pip install -c constraints.txt -e '.[demo]'.
Without `--model` it uses a tiny random model (it runs anywhere, but its answers are noise).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="web demo: upload media and chat in the browser (Gradio)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None,
                   help="model folder from `videollama convert` (default: a tiny random model; answers are noise)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="auto", help="torch device, e.g. cpu, cuda (default: cuda if available)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="weights dtype (default: the model's own)")
    return p


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from videollama.errors import CheckpointError, VideoLLaMAError

    try:
        import gradio  # noqa: F401
    except ImportError as exc:
        raise VideoLLaMAError("the web demo needs gradio: pip install -c constraints.txt -e '.[demo]'") from exc
    import torch

    import videollama
    from videollama.serving.webui import launch

    if args.model is None:
        print("notice: no --model given: using a tiny random model (its answers are noise)", file=sys.stderr)
    elif not args.model.is_dir():
        raise CheckpointError(f"{args.model}: model folder not found")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = videollama.load(args.model, device=device, dtype=args.dtype)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"notice: listening on {args.host}: the demo is reachable from other machines", file=sys.stderr)
    demo = launch(pipe, host=args.host, port=args.port, block=False, quiet=True)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"videollama demo running on http://{shown}:{args.port}/ (Ctrl-C to stop)", flush=True)
    demo.block_thread()  # returns on Ctrl-C, after closing the server
    return 0
