"""LLM-judge scoring over any OpenAI-compatible endpoint, with retries and an on-disk verdict cache.

The protocol is Video-ChatGPT's (Maaz et al. 2023): for open-ended QA the judge compares the prediction with the
reference and returns a Python dict string `{'pred': 'yes'|'no', 'score': 0..5}`; for the generative benchmark it
returns `{'score': 0..5}` per criterion. The prompt wording here is our own, following that protocol.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videollama.errors import VideoLLaMAError
from videollama.fileio import atomic_write_json

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
API_KEY_ENV = ("VIDEOLLAMA_JUDGE_API_KEY", "OPENAI_API_KEY")


class JudgeError(VideoLLaMAError):
    """The judge endpoint refused a request, or kept failing after all retries."""


# ---- prompts -----------------------------------------------------------------------------------------------
_REPLY_RULES = ("Reply with a Python dictionary string and nothing else: no explanation, no code fences, no other "
                "text.")

QA_SYSTEM = (
    "You grade answers to questions about videos. Given a question, the correct answer and a predicted answer, "
    "decide whether the prediction means the same as the correct answer.\n"
    "Rules:\n"
    "- Judge meaning, not wording: synonyms and paraphrases count as matches.\n"
    "- A prediction that contradicts the correct answer, or misses its key point, does not match.\n"
    "- Extra detail is fine as long as it does not contradict the correct answer.")

QA_USER = (
    "Question: {question}\n"
    "Correct answer: {answer}\n"
    "Predicted answer: {prediction}\n\n"
    "Does the predicted answer match the correct answer? Give 'yes' or 'no', and an integer score from 0 to 5 "
    "for how well it matches (5 = perfect match). " + _REPLY_RULES +
    " Its keys are 'pred' (the string 'yes' or 'no') and 'score' (an integer, not a string), for example: "
    "{{'pred': 'no', 'score': 1}}")

#: The five criteria of Video-ChatGPT's video-based text generation benchmark.
CRITERIA = ("correctness", "detail", "context", "temporal", "consistency")
CRITERION_NAMES = {
    "correctness": "correctness of information",
    "detail": "detail orientation",
    "context": "contextual understanding",
    "temporal": "temporal understanding",
    "consistency": "consistency",
}
_CRITERION_RULES = {
    "correctness": ("the factual accuracy of the predicted answer with respect to the correct answer",
                    "- The prediction must not contradict the correct answer or contain information it does not support.\n"
                    "- Synonyms and paraphrases are fine; judge the facts, not the wording."),
    "detail": ("how complete and specific the predicted answer is compared with the correct answer",
               "- Does the prediction cover the main points of the correct answer?\n"
               "- Is it specific, giving concrete details instead of generic statements?\n"
               "- Synonyms and paraphrases are fine."),
    "context": ("whether the predicted answer fits the overall context of the video described by the correct answer",
                "- Does the prediction stay consistent with the main themes and setting of the video?\n"
                "- Does it avoid details that are out of context or irrelevant?\n"
                "- Synonyms and paraphrases are fine."),
    "temporal": ("how well the predicted answer captures the order and timing of events given in the correct answer",
                 "- Are the events in the prediction in the same order as in the correct answer?\n"
                 "- Does it get durations, sequences and changes over time right?\n"
                 "- Synonyms and paraphrases are fine."),
    "consistency": ("whether two answers, given to two differently worded questions about the same thing, are "
                    "consistent with each other and with the correct answer",
                    "- Both answers should say the same thing, as both questions ask for the same information.\n"
                    "- Contradicting answers, or answers that contradict the correct answer, score low.\n"
                    "- Synonyms and paraphrases are fine."),
}


def _criterion_system(criterion: str) -> str:
    what, rules = _CRITERION_RULES[criterion]
    return (f"You grade answers to questions about videos on one criterion: {CRITERION_NAMES[criterion]}. "
            f"Assess {what}.\nRules:\n{rules}")


def _score_request(body: str) -> str:
    return (f"{body}\n\nGive an integer score from 0 to 5 (5 = best) for this criterion only. {_REPLY_RULES} "
            "Its only key is 'score' (an integer, not a string), for example: {'score': 3}")


def qa_messages(question: str, answer: str, prediction: str) -> Messages:
    """The yes/no + 0-5 judge request for one open-ended QA prediction."""
    return [{"role": "system", "content": QA_SYSTEM},
            {"role": "user", "content": QA_USER.format(question=question, answer=answer, prediction=prediction)}]


def criterion_messages(criterion: str, question: str, answer: str, prediction: str,
                       question2: str | None = None, prediction2: str | None = None) -> Messages:
    """The 0-5 judge request for one generative-benchmark criterion (consistency takes both questions/answers)."""
    if criterion == "consistency":
        body = (f"Question 1: {question}\nQuestion 2: {question2}\nCorrect answer: {answer}\n"
                f"Predicted answer to question 1: {prediction}\nPredicted answer to question 2: {prediction2}")
    else:
        body = f"Question: {question}\nCorrect answer: {answer}\nPredicted answer: {prediction}"
    return [{"role": "system", "content": _criterion_system(criterion)},
            {"role": "user", "content": _score_request(body)}]


# ---- parsing the verdict -----------------------------------------------------------------------------------
def _as_dict(reply: str) -> dict[str, Any] | None:
    text = reply.strip()
    text = re.sub(r"^```(?:python|json)?\s*|\s*```$", "", text)
    for m in re.finditer(r"\{[^{}]*\}", text):
        chunk = m.group(0)
        for parse in (ast.literal_eval, json.loads):
            try:
                value = parse(chunk)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict):
                return {str(k).strip().lower(): v for k, v in value.items()}
    return None


def _score(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        score = float(value)
    else:
        m = re.search(r"-?\d+(?:\.\d+)?", str(value))
        if not m:
            return None
        score = float(m.group(0))
    return min(5.0, max(0.0, score))


def parse_qa_verdict(reply: str) -> tuple[bool, float] | None:
    """(matched, score 0-5) from a judge reply like "{'pred': 'yes', 'score': 4}"; None when unreadable.

    Accepts JSON or Python dict syntax, code fences, text around the dict, scores given as strings or floats
    (clamped to 0-5), and as a last resort `pred: yes ... score: 4` written without a dict.
    """
    d = _as_dict(reply)
    pred = score = None
    if d is not None:
        pred, score = d.get("pred", d.get("prediction", d.get("match"))), _score(d.get("score"))
    if pred is None or score is None:
        m_pred = re.search(r"pred\w*['\"]?\s*[:=]\s*['\"]?\s*(yes|no)\b", reply, re.IGNORECASE)
        m_score = re.search(r"score['\"]?\s*[:=]\s*['\"]?\s*(-?\d+(?:\.\d+)?)", reply, re.IGNORECASE)
        pred = pred if pred is not None else (m_pred.group(1) if m_pred else None)
        score = score if score is not None else (_score(m_score.group(1)) if m_score else None)
    if pred is None or score is None:
        return None
    word = str(pred).strip().strip("'\"").lower()
    if word in ("yes", "y", "true", "correct"):
        return True, score
    if word in ("no", "n", "false", "incorrect"):
        return False, score
    return None


def parse_score(reply: str) -> float | None:
    """The 0-5 score from a judge reply like "{'score': 4}"; None when unreadable."""
    d = _as_dict(reply)
    if d is not None and "score" in d and (s := _score(d["score"])) is not None:
        return s
    m = re.search(r"score['\"]?\s*[:=]\s*['\"]?\s*(-?\d+(?:\.\d+)?)", reply, re.IGNORECASE)
    if m:
        return _score(m.group(1))
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*", reply)
    return _score(m.group(1)) if m else None


# ---- the client --------------------------------------------------------------------------------------------
def chat_completions_url(url: str) -> str:
    """Accept a server root, a /v1 base URL or the full endpoint."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


def default_judge_cache() -> Path:
    return Path(os.environ.get("VIDEOLLAMA_CACHE", Path.home() / ".cache" / "videollama")) / "judge-cache"


class JudgeClient:
    """POST /v1/chat/completions with retries (429, 5xx, timeouts, refused connections) and a disk cache.

    The cache key is a SHA-256 of the judge model, the messages and the decoding settings, so rerunning an
    evaluation (or scoring the same predictions again) makes no calls. `calls` counts HTTP requests made,
    `cache_hits` the replies served from the cache.
    """

    RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})

    def __init__(self, url: str, model: str, *, api_key: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 60.0, max_retries: int = 6, backoff: float = 1.0, max_backoff: float = 60.0,
                 temperature: float = 0.0, max_tokens: int = 128, sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = chat_completions_url(url)
        self.model = model
        self.api_key = api_key if api_key is not None else next(
            (os.environ[k] for k in API_KEY_ENV if os.environ.get(k)), None)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_judge_cache()
        self.timeout, self.max_retries, self.backoff, self.max_backoff = timeout, max_retries, backoff, max_backoff
        self.temperature, self.max_tokens = temperature, max_tokens
        self._sleep = sleep
        self._lock = threading.Lock()
        self.calls = 0
        self.cache_hits = 0

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    # cache ---------------------------------------------------------------------------------------------------
    def cache_key(self, messages: Messages) -> str:
        blob = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                           "max_tokens": self.max_tokens}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, key: str) -> str | None:
        try:
            return json.loads(self._cache_path(key).read_text(encoding="utf-8"))["reply"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, key: str, messages: Messages, reply: str) -> None:
        path = self._cache_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"model": self.model, "messages": messages, "reply": reply}, indent=None)

    # requests ------------------------------------------------------------------------------------------------
    def complete(self, messages: Messages) -> str:
        """The judge's reply text (from the cache when this exact request was made before)."""
        key = self.cache_key(messages)
        cached = self._cached(key)
        if cached is not None:
            with self._lock:
                self.cache_hits += 1
            return cached
        reply = self._post(messages)
        self._store(key, messages, reply)
        return reply

    def _post(self, messages: Messages) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                           "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            with self._lock:
                self.calls += 1
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                return _reply_text(payload, self.url)
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code not in self.RETRY_STATUS:
                    raise JudgeError(f"judge {self.url}: HTTP {exc.code}: {detail}") from exc
                last = f"HTTP {exc.code}: {detail}"
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except ValueError as exc:  # a 200 with a body that is not JSON: a broken proxy, worth a retry
                last = f"unreadable response: {exc}"
            if attempt == self.max_retries:
                break
            delay = retry_after if retry_after is not None else self.backoff * (2 ** attempt)
            delay = min(self.max_backoff, delay) * (1.0 + 0.1 * random.random())
            log.warning("judge request failed (%s); retry %d/%d in %.1fs", last, attempt + 1, self.max_retries, delay)
            self._sleep(delay)
        raise JudgeError(f"judge {self.url}: giving up after {self.max_retries + 1} attempts ({last})")


def _reply_text(payload: Any, url: str) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise JudgeError(f"judge {url}: response has no choices[0].message.content") from exc
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read().decode("utf-8", "replace")[:300].strip() or exc.reason
    except Exception:  # noqa: BLE001 - best effort only
        return str(exc.reason)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
