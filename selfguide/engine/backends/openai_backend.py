"""Generation and scoring over HTTP, on an OpenAI-compatible server that already serves the base model (vLLM,
KServe's Hugging Face runtime, AIBrix): `/v1/completions` with token-id prompts, so the server computes exactly the
prompt the local tokenizer rendered and counted.

The `openai` client retries what a retry may cure (timeouts, lost connections, 408, 409, 429, 5xx) with
exponential backoff and `Retry-After`, `endpoint.maxRetries` times; a request that still fails ends the stage as
retryable (its Job tries again), one the server refuses (4xx) or answers without what was asked for (fewer than
`n` completions, no log-probabilities) as permanent, with the endpoint and the missing feature named."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import openai
from transformers import PreTrainedTokenizerBase

from selfguide.contract.errors import InvalidInput, PermanentError, RetryableError
from selfguide.engine.backends.base import (
    AdapterSwitch,
    Completion,
    GenerationBackend,
    Messages,
    SamplingParams,
    Throughput,
    cut_at_stop,
    keep_n,
)
from selfguide.engine.backends.chat import ChatRendering, answer_ids, end_of_turn, load_tokenizer
from selfguide.engine.backends.token_prompts import Request, plan_requests
from selfguide.engine.backends.vllm_backend import context_length
from selfguide.engine.models import ModelLocation
from selfguide.spec.endpoint import API_KEY_ENV, EndpointSpec

MAX_STOP_STRINGS = 4
"""The most stop strings the OpenAI API (and vLLM's server, 400 otherwise) takes; the rest cut the text here."""

T = TypeVar("T")
I = TypeVar("I")


class EndpointRefused(PermanentError):
    """The server refused a request (4xx), or cannot do what the stage needs."""


class EndpointUnreachable(RetryableError):
    """The server did not answer within the retries (down, overloaded, timing out): the stage may be retried."""


def api_key(endpoint: EndpointSpec) -> str:
    """The key to send: `$OPENAI_API_KEY` where `apiKeySecret` is set (the operator sets it from the Secret),
    otherwise a placeholder (the client needs one; a server without `--api-key` ignores it)."""
    if endpoint.api_key_secret is None:
        return "none"
    key = os.environ.get(API_KEY_ENV)
    if not key:
        raise InvalidInput(f"generation.endpoint.apiKeySecret is set but {API_KEY_ENV} is empty: stage pods get it "
                           f"from the Secret; for `selfguide run`, export {API_KEY_ENV}")
    return key


def completion_params(params: SamplingParams, max_tokens: int, seed: int | None) -> dict[str, Any]:
    """Arguments of `/v1/completions` equivalent to `params` (vLLM's extensions in `extra_body`). As with the
    vLLM backend, `best_of` is done here: `params.samples` completions with their log-probabilities, the best kept.
    Stop strings past the API's four are applied to the returned text (`cut_at_stop`)."""
    greedy = params.greedy
    ranked = bool(params.best_of and params.best_of > params.n)
    extra: dict[str, Any] = {}
    if params.top_k > 0 and not greedy:
        extra["top_k"] = params.top_k
    if params.min_tokens:
        extra["min_tokens"] = params.min_tokens
    return {
        "n": 1 if greedy else params.samples,
        "temperature": params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "max_tokens": max_tokens,
        "stop": list(params.stop[:MAX_STOP_STRINGS]) or openai.omit,
        "seed": openai.omit if seed is None else seed,
        "logprobs": 0 if ranked else openai.omit,
        "extra_body": extra or None,
    }


def adapter_name(adapter: Path) -> str:
    """The name an adapter is loaded under: its weights' digest, so a retried stage reloads the same one in place
    and two jobs sharing a server never collide."""
    digest = hashlib.sha256()
    for file in sorted(adapter.glob("adapter_*")):
        digest.update(file.read_bytes())
    return f"selfguide-{digest.hexdigest()[:16]}"


class OpenAIBackend(ChatRendering):
    """The model behind `endpoint`, with its tokenizer loaded here for rendering and counting."""

    def __init__(self, endpoint: EndpointSpec, tokenizer: PreTrainedTokenizerBase, client: openai.OpenAI,
                 max_model_len: int) -> None:
        self.endpoint = endpoint
        self.tokenizer = tokenizer
        self.client = client
        self.max_model_len = max_model_len
        self.model = endpoint.model
        self.adapter: str | None = None
        """The loaded adapter's name on the server, if any."""
        self.throughput = Throughput()

    @classmethod
    def connect(cls, endpoint: EndpointSpec, tokenizer: PreTrainedTokenizerBase,
                context_length: Callable[[], int]) -> OpenAIBackend:
        """A backend on `endpoint` after checking that it serves `endpoint.model`; its context window is the
        server's (`max_model_len` in vLLM's model list), else `context_length()` (the model's own)."""
        client = openai.OpenAI(base_url=endpoint.url, api_key=api_key(endpoint),
                               timeout=float(endpoint.timeout_seconds), max_retries=endpoint.max_retries)
        try:
            models = call(endpoint, "listing models", lambda: client.models.list().data)
            served = next((m for m in models if m.id == endpoint.model), None)
            if served is None:
                names = ", ".join(sorted(m.id for m in models)) or "none"
                raise EndpointRefused(f"generation.endpoint.model {endpoint.model!r}: {endpoint.url} serves {names}")
        except BaseException:
            client.close()  # no backend owns it yet
            raise
        length = getattr(served, "max_model_len", None) or (served.model_extra or {}).get("max_model_len")
        return cls(endpoint, tokenizer, client, int(length) if length else context_length())

    def load_adapter(self, adapter: Path) -> None:
        """Load `adapter` into the server (vLLM's run-time LoRA loading, in place if it is there already) and
        send the requests outside `adapter_disabled` to it."""
        name = adapter_name(adapter)
        body = {"lora_name": name, "lora_path": str(adapter.resolve()), "load_inplace": True}
        call(self.endpoint, "loading the adapter",
             lambda: self.client.post("/load_lora_adapter", body=body, cast_to=str))
        self.adapter = self.model = name

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Send requests to the base model inside this block."""
        previous, self.model = self.model, self.endpoint.model
        try:
            yield
        finally:
            self.model = previous

    def generate(self, prompts: Sequence[str], params: SamplingParams, desc: str = "") -> list[list[Completion]]:
        """`params.n` completions per prompt, one request per prompt (the server batches those in flight); none
        for a prompt longer than the server's context window."""
        started = time.perf_counter()
        requests, skipped = plan_requests(self.tokenizer, prompts, params, self.max_model_len, desc)
        results: list[list[Completion]] = [[] for _ in prompts]
        for request, completions in zip(requests, self._each(requests, lambda r: self._complete(r, params)),
                                        strict=True):
            results[request.index] = keep_n(completions, params.n)
            self.throughput.generated_tokens += sum(c.tokens for c in completions)
        self._count(requests, sum(len(r.token_ids) for r in requests), skipped, started)
        return results

    def score_answers(self, prompts: Sequence[str], answers: Sequence[str], desc: str = "") -> list[list[float]]:
        """Each answer's log-probability after each prompt: the prompt log-probabilities (`echo` with `logprobs`)
        of the prompt followed by the answer, one request per pair (vLLM computes the whole prompt again for each:
        it does not read its prefix cache for a request that asks prompt log-probabilities; one sequence per
        request, because a CPU vLLM server with `--enable-lora` dies on prompt log-probabilities
        for several sequences of one request: docs/performance.md)."""
        started = time.perf_counter()
        end = end_of_turn(self.tokenizer, None)
        tails = [answer_ids(self.tokenizer, answer, end) for answer in answers]
        longest = max(map(len, tails), default=0)
        requests, skipped = plan_requests(self.tokenizer, prompts, SamplingParams(), self.max_model_len - longest)
        pairs = [(r.token_ids + tail, len(tail)) for r in requests for tail in tails]
        scores = iter(self._each(pairs, lambda pair: self._score(*pair)))
        results: list[list[float]] = [[] for _ in prompts]
        for request in requests:
            results[request.index] = [next(scores) for _ in tails]
        self._count(requests, sum(len(ids) for ids, _ in pairs), skipped, started)
        return results

    def close(self) -> None:
        """Unload an adapter this backend loaded, and close the connections."""
        if self.adapter:
            with contextlib.suppress(EndpointRefused, EndpointUnreachable):
                body = {"lora_name": self.adapter}
                call(self.endpoint, "unloading the adapter",
                     lambda: self.client.post("/unload_lora_adapter", body=body, cast_to=str))
            self.adapter = None
        self.client.close()

    def _complete(self, request: Request, params: SamplingParams) -> list[Completion]:
        room = self.max_model_len - len(request.token_ids)
        arguments = completion_params(params, min(params.max_tokens, room), request.seed)
        response = call(self.endpoint, "generating", lambda: self.client.completions.create(
            model=self.model, prompt=request.token_ids, **arguments))
        expected = arguments["n"]
        if len(response.choices) != expected:
            raise EndpointRefused(f"{self.endpoint.url} returned {len(response.choices)} completion(s) for n="
                                  f"{expected}: annotation samples several answers per prompt, so the server must "
                                  "support n (vLLM does)")
        completions = []
        for choice in sorted(response.choices, key=lambda c: c.index):
            logprob = 0.0
            if arguments["logprobs"] is not openai.omit:
                if choice.logprobs is None or choice.logprobs.token_logprobs is None:
                    raise missing_logprobs(self.endpoint)
                logprob = sum(p for p in choice.logprobs.token_logprobs if p is not None)
            tokens = len(choice.logprobs.tokens or []) if choice.logprobs else 0
            completions.append(Completion(cut_at_stop(choice.text, params.stop), logprob, tokens))
        if response.usage and not any(c.tokens for c in completions):
            share = response.usage.completion_tokens // max(1, len(completions))
            completions = [Completion(c.text, c.logprob, share) for c in completions]
        return completions

    def _score(self, ids: list[int], answer_tokens: int) -> float:
        """The log-probability of the last `answer_tokens` tokens of `ids` after the ones before."""
        response = call(self.endpoint, "scoring answers", lambda: self.client.completions.create(
            model=self.model, prompt=ids, max_tokens=1, temperature=0.0, echo=True, logprobs=0))
        choice = response.choices[0] if response.choices else None
        logprobs = choice.logprobs.token_logprobs if choice and choice.logprobs else None
        answer = logprobs[len(ids) - answer_tokens:len(ids)] if logprobs and len(logprobs) >= len(ids) else []
        if len(answer) != answer_tokens or any(p is None for p in answer):
            raise missing_logprobs(self.endpoint)
        return float(sum(p for p in answer if p is not None))

    def _each(self, items: list[I], send: Callable[[I], T]) -> list[T]:
        """`send` for every item, `endpoint.concurrency` at a time, results in item order. The first failure
        cancels the requests not yet sent (a refused request fails the stage now, not after every other one)."""
        if len(items) <= 1 or self.endpoint.concurrency == 1:
            return [send(item) for item in items]
        pool = ThreadPoolExecutor(max_workers=min(self.endpoint.concurrency, len(items)))
        futures = [pool.submit(send, item) for item in items]
        try:
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _count(self, requests: list[Request], prompt_tokens: int, skipped: list[int], started: float) -> None:
        self.throughput.prompts += len(requests)
        self.throughput.prompt_tokens += prompt_tokens
        self.throughput.skipped_prompts += len(skipped)
        self.throughput.seconds += time.perf_counter() - started


ADAPTER_LOADING_HINT = (
    "; generation.endpoint.adapter server needs a vLLM server started with --enable-lora and "
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True that sees the output claim at /data (or use adapter: local)")


def missing_logprobs(endpoint: EndpointSpec) -> EndpointRefused:
    return EndpointRefused(f"{endpoint.url} returned no log-probabilities: best-of sampling and label likelihood "
                           "need `logprobs` (and `echo` for prompt tokens) on /v1/completions (vLLM has them)")


def call(endpoint: EndpointSpec, doing: str, send: Callable[[], T]) -> T:
    """`send()`, with the client's errors as the stage's: retryable once the client's own retries are spent,
    permanent when the server refuses the request. Messages name the endpoint, never the key."""
    try:
        return send()
    except openai.APITimeoutError:
        raise EndpointUnreachable(f"{doing}: {endpoint.url} did not answer within "
                                  f"generation.endpoint.timeoutSeconds ({endpoint.timeout_seconds} s), "
                                  f"{endpoint.max_retries} retries") from None
    except openai.APIConnectionError as error:
        raise EndpointUnreachable(f"{doing}: cannot reach {endpoint.url} ({error.__cause__ or error}) after "
                                  f"{endpoint.max_retries} retries") from None
    except openai.APIStatusError as error:
        status, message = error.status_code, server_message(error)
        if status in (404, 405) and doing == "loading the adapter":
            message += ADAPTER_LOADING_HINT
        if status in (408, 409, 429) or status >= 500:
            raise EndpointUnreachable(f"{doing}: {endpoint.url} answered {status} ({message}) after "
                                      f"{endpoint.max_retries} retries") from None
        if status in (401, 403):
            message += f"; check generation.endpoint.apiKeySecret ({API_KEY_ENV})"
        raise EndpointRefused(f"{doing}: {endpoint.url} answered {status}: {message}") from None
    except openai.APIError as error:  # an answer that is not the API's (a proxy's HTML page, a cut body)
        raise EndpointRefused(f"{doing}: {endpoint.url} did not answer as an OpenAI-compatible server "
                              f"({type(error).__name__})") from None


def server_message(error: openai.APIStatusError) -> str:
    """The server's own explanation: the OpenAI error body's `message`, else the start of the response text."""
    body = error.body
    if isinstance(body, dict):
        detail = body.get("error", body)
        if isinstance(detail, dict) and detail.get("message"):
            return str(detail["message"])[:500]
    return (error.response.text or error.message)[:500]


class LocalAdapter(AdapterSwitch):
    """The base model on the endpoint, the fine-tuned adapter in a backend of this process (`adapter: local`):
    requests inside `adapter_disabled` go to the endpoint, all others to the local backend. `throughput` is the
    endpoint's (the local backend keeps its own)."""

    def __init__(self, endpoint: OpenAIBackend, local: GenerationBackend) -> None:
        self.endpoint = endpoint
        self.local = local
        self.use_adapter = True
        self.throughput = endpoint.throughput

    def _current(self) -> GenerationBackend:
        return self.local if self.use_adapter else self.endpoint

    def render_chat(self, messages: Messages, response_prefix: str = "") -> str:
        return self.endpoint.render_chat(messages, response_prefix)

    def count_tokens(self, text: str) -> int:
        return self.endpoint.count_tokens(text)

    def generate(self, prompts: Sequence[str], params: SamplingParams, desc: str = "") -> list[list[Completion]]:
        return self._current().generate(prompts, params, desc)

    def score_answers(self, prompts: Sequence[str], answers: Sequence[str], desc: str = "") -> list[list[float]]:
        return self._current().score_answers(prompts, answers, desc)

    def close(self) -> None:
        try:
            self.local.close()
        finally:
            self.endpoint.close()


def connect(location: ModelLocation, trust_remote_code: bool, endpoint: EndpointSpec, adapter: str | None,
            local: GenerationBackend | None) -> GenerationBackend:
    """The endpoint's backend for the model at `location` (its tokenizer), with `adapter` loaded into the server,
    or run by `local` (which this closes if the endpoint cannot be used)."""
    backend: OpenAIBackend | None = None
    try:
        tokenizer = load_tokenizer(location, trust_remote_code)
        backend = OpenAIBackend.connect(endpoint, tokenizer, lambda: context_length(location, trust_remote_code))
        if local is not None:
            return LocalAdapter(backend, local)
        if adapter is not None:
            backend.load_adapter(Path(adapter))
        return backend
    except BaseException:
        if local is not None:
            local.close()
        if backend is not None:
            backend.close()
        raise
