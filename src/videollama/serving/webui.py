"""The web demo (`videollama demo`): a Gradio Blocks app like the official Video-LLaMA demo.

Upload a video, an image or an audio file, optionally use the video's audio track, then chat (streaming,
multi-turn) with the generation settings of the official demo. The UI is thin: every callback only calls
the Python API (`videollama.inference.pipeline`), which encodes each file once and caches it.

The callbacks are plain methods of `WebDemo` (no Gradio needed to call them), so they can be tested directly;
`build_demo` wires them to components and `launch` serves the app on loopback with analytics off.
Unlike the official demo, a video without an audio track does not fail silently: the notice is shown.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videollama.errors import VideoLLaMAError
from videollama.inference.pipeline import ChatSession, VideoLLaMAPipeline

TITLE = "Video-LLaMA"
DESCRIPTION = ("Upload a **video**, an **image** or an **audio** file, then ask questions about it. "
               "Tick *Audio* to let the model also hear a video's sound track.")
READY_HINT = "Ask a question, or click **Upload & Start Chat** to encode it now."
NO_MEDIA = "No media yet: upload a video, an image or an audio file (or just chat without one)."

Message = dict[str, Any]  # Gradio "messages" format: {"role": "user" | "assistant", "content": str}


@dataclass
class DemoState:
    """One browser session: the chosen media file and its conversation."""

    media: str | None = None
    kind: str | None = None  # 'video' | 'image' | 'audio'
    chat: ChatSession | None = None
    use_audio: bool | None = None  # the audio setting the current chat was started with


def _media_label(state: DemoState) -> str:
    return f"`{Path(state.media).name}` ({state.kind})" if state.media else "no media"


def _notice_md(notice: str | None) -> str:
    return f"\n\n**Notice: {notice}**" if notice else ""


def _parse_seed(seed: str | float | None) -> int | None:
    """The seed field: empty means random; otherwise a non-negative integer."""
    text = "" if seed is None else str(seed).strip()
    if not text:
        return None
    try:
        value = int(float(text)) if isinstance(seed, float) else int(text)
    except ValueError:
        raise ValueError(f"seed must be a whole number (or empty for random), got {text!r}") from None
    if value < 0:
        raise ValueError(f"seed must be >= 0, got {value}")
    return value


class WebDemo:
    """The callbacks of the web demo, bound to one pipeline."""

    def __init__(self, pipe: VideoLLaMAPipeline) -> None:
        self.pipe = pipe

    # ---- media --------------------------------------------------------------------------------
    def on_media(self, state: DemoState | None, path: str | None, kind: str,
                 history: list[Message] | None = None) -> tuple[DemoState, list[Message], str]:
        """A media component changed: remember the file (or forget it when cleared) and start a new chat."""
        state = state or DemoState()
        if path:
            state = DemoState(media=str(path), kind=kind)
        elif state.kind == kind:  # this component was cleared
            state = DemoState()
        else:  # another tab's component was cleared: keep the current file and conversation
            return state, list(history or []), self._status(state)
        return state, [], self._status(state)

    def on_audio_toggle(self, state: DemoState | None, use_audio: bool,
                        history: list[Message] | None = None) -> tuple[DemoState, list[Message], str]:
        """The Audio checkbox changed: a started conversation about a video is restarted with the new setting."""
        state = state or DemoState()
        if state.chat is not None and state.kind == "video" and state.use_audio != bool(use_audio):
            state = DemoState(media=state.media, kind=state.kind)
            return state, [], self._status(state) + "\n\nAudio setting changed: the conversation was restarted."
        return state, list(history or []), self._status(state)

    def on_upload(self, state: DemoState | None, use_audio: bool) -> tuple[DemoState, list[Message], str]:
        """'Upload & Start Chat': encode the media now (once; cached) and start a fresh conversation."""
        state = state or DemoState()
        if not state.media:
            return state, [], NO_MEDIA
        try:
            self._start(state, use_audio)
        except VideoLLaMAError as exc:
            return DemoState(media=state.media, kind=state.kind), [], f"**Error:** {exc}"
        return state, [], self._status(state)

    def _start(self, state: DemoState, use_audio: bool) -> ChatSession:
        """The chat for the current media (encoded once by the pipeline's cache)."""
        state.chat = self.pipe.chat(state.media, kind=state.kind, use_audio=bool(use_audio))  # type: ignore[arg-type]
        state.use_audio = bool(use_audio)
        return state.chat

    def _status(self, state: DemoState) -> str:
        if not state.media:
            return "Chatting without media (text only)." if state.chat is not None else NO_MEDIA
        if state.chat is None:
            return f"Selected {_media_label(state)}. {READY_HINT}"
        media = state.chat.media
        what = " + ".join(media.order) if media else "text"
        return f"Chatting about {_media_label(state)} — encoded: {what}.{_notice_md(media.notice if media else None)}"

    # ---- chat ---------------------------------------------------------------------------------
    def on_ask(self, state: DemoState | None, question: str, history: list[Message] | None, use_audio: bool = True,
               num_beams: float = 1, temperature: float = 1.0, top_p: float = 0.9, max_new_tokens: float = 300,
               seed: str | int | None = None, greedy: bool = False,
               ) -> Iterator[tuple[DemoState, list[Message], str, str]]:
        """Answer one question, streaming. Yields (state, chat history, question box, status).

        The first question about a file encodes it (unless 'Upload & Start Chat' already did); later questions
        continue the same conversation, so the media is encoded once.
        """
        state = state or DemoState()
        history = list(history or [])
        question = (question or "").strip()
        if not question:
            yield state, history, "", self._status(state)
            return
        try:
            settings = dict(num_beams=int(num_beams or 1), temperature=float(temperature), top_p=float(top_p),
                            max_new_tokens=int(max_new_tokens), seed=_parse_seed(seed), greedy=bool(greedy))
        except ValueError as exc:  # keep the question in the box so it can be sent again
            yield state, history, question, f"**Error:** {exc}"
            return
        history.append({"role": "user", "content": question})
        if state.chat is None:
            if state.media:
                yield state, list(history), "", f"Encoding {_media_label(state)}..."
            try:
                self._start(state, use_audio)
            except VideoLLaMAError as exc:
                history.append({"role": "assistant", "content": f"Error: {exc}"})
                yield DemoState(media=state.media, kind=state.kind), history, "", f"**Error:** {exc}"
                return
        status = self._status(state)
        yield state, list(history), "", status  # the question shows at once; the answer streams in below
        chat = state.chat
        assert chat is not None
        try:
            if settings["num_beams"] > 1:  # transformers cannot stream beam search: answer in one piece
                chat.ask(question, **settings)
            else:
                text = ""
                for piece in chat.stream(question, **settings):
                    text += piece
                    yield state, history + [{"role": "assistant", "content": text}], "", status
        except VideoLLaMAError as exc:  # the conversation is left half-done: start over with the same media
            history.append({"role": "assistant", "content": f"Error: {exc}"})
            yield (DemoState(media=state.media, kind=state.kind), history, "",
                   f"**Error:** {exc} (the conversation was restarted)")
            return
        history.append({"role": "assistant", "content": chat.history[-1][1]})  # the cleaned-up final answer
        yield state, history, "", status

    def on_restart(self) -> tuple[DemoState, list[Message], str, None, None, None, str]:
        """'Restart': forget the media and the conversation."""
        return DemoState(), [], NO_MEDIA, None, None, None, ""


def _messages_format(gr) -> dict[str, str]:
    """Gradio 5 needs type='messages' for the dict history; Gradio 6 only has that format (no `type`)."""
    import inspect

    return {"type": "messages"} if "type" in inspect.signature(gr.Chatbot.__init__).parameters else {}


def build_demo(pipe: VideoLLaMAPipeline, title: str = TITLE):
    """The Gradio Blocks app for `pipe` (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    web = WebDemo(pipe)
    s = pipe.settings
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {title}\n{DESCRIPTION}")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tabs():
                    with gr.Tab("Video"):
                        video = gr.Video(label="Video", sources=["upload"], elem_id="vl-video")
                    with gr.Tab("Image"):
                        image = gr.Image(label="Image", type="filepath", sources=["upload"], elem_id="vl-image")
                    with gr.Tab("Audio"):
                        audio = gr.Audio(label="Audio file", type="filepath", sources=["upload"], elem_id="vl-audio")
                use_audio = gr.Checkbox(value=True, label="Audio", elem_id="vl-use-audio",
                                        info="use the video's audio track (a notice is shown when it has none)")
                upload = gr.Button("Upload & Start Chat", variant="primary", elem_id="vl-upload")
                status = gr.Markdown(NO_MEDIA, elem_id="vl-status")
                restart = gr.Button("Restart", elem_id="vl-restart")
                with gr.Accordion("Generation parameters", open=True):
                    num_beams = gr.Slider(1, 10, value=s.num_beams, step=1, label="Beam search numbers",
                                          elem_id="vl-beams")
                    temperature = gr.Slider(0.1, 2.0, value=s.temperature, step=0.1, label="Temperature",
                                            elem_id="vl-temperature")
                    top_p = gr.Slider(0.05, 1.0, value=s.top_p, step=0.05, label="Top-p", elem_id="vl-top-p")
                    max_new_tokens = gr.Slider(1, 1000, value=s.max_new_tokens, step=1, label="Max new tokens",
                                               elem_id="vl-max-new-tokens")
                    seed = gr.Textbox(value="" if s.seed is None else str(s.seed), label="Seed",
                                      placeholder="empty: random", elem_id="vl-seed")
                    greedy = gr.Checkbox(value=not s.do_sample, label="Greedy (no sampling)", elem_id="vl-greedy")
            with gr.Column(scale=2):
                chatbot = gr.Chatbot(label=title, height=520, elem_id="vl-chatbot", **_messages_format(gr))
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask a question about the media and press Enter",
                                          show_label=False, scale=5, elem_id="vl-question")
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="vl-send")

        for component, kind in ((video, "video"), (image, "image"), (audio, "audio")):
            component.change(lambda st, path, hist, _k=kind: web.on_media(st, path, _k, hist),
                             [state, component, chatbot], [state, chatbot, status], queue=False)
        use_audio.change(web.on_audio_toggle, [state, use_audio, chatbot], [state, chatbot, status], queue=False)
        upload.click(web.on_upload, [state, use_audio], [state, chatbot, status], api_name="upload")
        ask_inputs = [state, question, chatbot, use_audio, num_beams, temperature, top_p, max_new_tokens, seed,
                      greedy]
        ask_outputs = [state, chatbot, question, status]
        asked = [question.submit(web.on_ask, ask_inputs, ask_outputs, api_name="ask"),
                 send.click(web.on_ask, ask_inputs, ask_outputs)]
        restart.click(web.on_restart, None, [state, chatbot, status, video, image, audio, question],
                      cancels=asked)
    return demo


def launch(pipe: VideoLLaMAPipeline, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True,
           quiet: bool = False):
    """Serve the demo on `host:port` (loopback by default; never shared). Returns the Blocks app."""
    demo = build_demo(pipe)
    demo.queue(default_concurrency_limit=1)  # one generation at a time per model
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
                prevent_thread_lock=not block, quiet=quiet)
    return demo


__all__ = ["DemoState", "WebDemo", "build_demo", "launch"]
