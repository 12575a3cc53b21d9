"""A real uvicorn server on a free loopback port, driven by the official `openai` client; and the CLI wiring."""

from __future__ import annotations

import socket
import threading
import time

import pytest

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_url(serve_pipe, media_root):
    from videollama.serving import ServerConfig, create_app

    app = create_app(serve_pipe, ServerConfig(model_name="tiny-live", media_root=media_root, api_key="k-123"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    yield f"http://{host}:{port}/v1"
    server.should_exit = True
    thread.join(10)


def _messages() -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "What is happening?"},
                                         {"type": "video_url", "video_url": {"url": "example.mp4"}}]}]


def test_openai_client_non_streaming_and_streaming(live_url, serve_pipe, media_root) -> None:
    client = openai.OpenAI(base_url=live_url, api_key="k-123", max_retries=0, timeout=60)
    assert [m.id for m in client.models.list()] == ["tiny-live"]
    completion = client.chat.completions.create(model="tiny-live", messages=_messages(), max_tokens=8, temperature=0)
    assert completion.object == "chat.completion" and completion.model == "tiny-live"
    text = completion.choices[0].message.content
    assert completion.choices[0].message.role == "assistant"
    assert text == serve_pipe.ask(media_root / "example.mp4", "What is happening?", greedy=True, max_new_tokens=8)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens

    stream = client.chat.completions.create(model="tiny-live", messages=_messages(), max_tokens=8, temperature=0,
                                            stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == completion.choices[0].finish_reason


def test_openai_client_errors(live_url) -> None:
    client = openai.OpenAI(base_url=live_url, api_key="k-123", max_retries=0, timeout=60)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="tiny-live", max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "../../etc/passwd"}}]}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=live_url, api_key="wrong", max_retries=0).models.list()
    assert client.chat.completions.create(model="tiny-live", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2, temperature=0).choices  # still up


def test_cli_parses_serve_flags(monkeypatch) -> None:
    from videollama.cli.main import build_parser

    monkeypatch.setenv("VIDEOLLAMA_API_KEY", "from-env")
    parser = build_parser("serve")
    args = parser.parse_args(["serve", "--port", "9001", "--max-concurrent", "2", "--queue-size", "0",
                              "--allow-remote-urls", "--request-timeout", "5", "--model-name", "m"])
    assert (args.host, args.port, args.max_concurrent, args.queue_size, args.allow_remote_urls) == \
        ("127.0.0.1", 9001, 2, 0, True)
    assert args.request_timeout == 5 and args.model_name == "m"


def test_cli_rejects_bad_media_root_before_loading(tmp_path, capsys) -> None:
    from videollama.cli.main import main

    assert main(["serve", "--media-root", str(tmp_path / "nope")]) == 2
    assert "--media-root" in capsys.readouterr().err


def test_cli_runs_uvicorn_with_the_config(monkeypatch, tmp_path, media_root, serve_pipe) -> None:
    import videollama.inference.pipeline as pipeline
    from videollama.cli.main import main

    seen = {}
    monkeypatch.setattr(pipeline, "load", lambda model, device="cpu": serve_pipe)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", "--model", str(tmp_path / "my-model"), "--media-root", str(media_root), "--port", "8123",
                 "--api-key", "x", "--max-tokens", "64"]) == 0
    config = seen["app"].state.config
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8123)
    assert config.model_name == "my-model" and config.api_key == "x" and config.max_tokens == 64
    assert config.media_root == media_root.resolve()
