"""`POST /-/hooks/<REPO KEY>`: a forge says a repository changed; the fetcher is told, nothing more.

A delivery is a hint. It is authenticated with the repository's own secret (chosen by the URL,
before the body is looked at), then, when it announces a new tag, one file is queued for the
fetcher (`fetch_queue`) and the answer goes out: milliseconds, whatever a fetch run is doing,
far inside GitHub's 10 s and Gitea's 5 s. The fetcher fetches the configured remote with the
configured credentials, exactly as on the timer; nothing in the payload is trusted.

Each step answers without doing the next (see the design note, push-builds.md A4):
webhooks off, unknown key or no secret -> the same 404 (keys are not enumerable); not POST ->
405; no length -> 411; over `max_body` -> 413, the body unread; a client past the failed-attempt
limit -> 429; a missing or wrong signature -> 401, counted; a ping -> 200; anything but a tag's
creation -> 202 ignored (never 4xx: GitLab disables a hook that keeps getting them); a delivery
id seen before, by any worker process -> 200 duplicate; else 202 queued or coalesced. The journal
gets one entry per delivery (fields REPO, FORGE, EVENT, DELIVERY, OUTCOME); never the body,
a signature or a secret.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pypi_insiders import deliveries, fetch_queue, webhook_secrets
from pypi_insiders.config import Config, RepoConfig
from pypi_insiders.errors import CredentialError
from pypi_insiders.web import hook_forges
from pypi_insiders.web.auth import FailedLogins, failure_key
from pypi_insiders.web.response import Response, plain

log = logging.getLogger(__name__)

HOOKS_URL: Final = "/-/hooks/"
_LOGGED_REFUSALS_PER_SECOND: Final = 20


class _Limit:
    """At most `per_second` refusal entries a second: a flood must not flood the journal."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._lock = threading.Lock()
        self._second, self._count = -1, 0

    def admit(self) -> bool:
        with self._lock:
            now = int(time.monotonic())
            if now != self._second:
                self._second, self._count = now, 0
            self._count += 1
            return self._count <= self.per_second


@dataclass(frozen=True)
class _Outcome:
    """One answer and its journal entry: `outcome` is queued, coalesced, duplicate, ignored, pong,
    or refused:<reason>."""

    status: str
    outcome: str
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()


class Hooks:
    """The route; the config comes with each call (a reload swaps it), the attempt counts stay."""

    def __init__(self, failed: FailedLogins) -> None:
        self.failed = failed
        self._refusals = _Limit(_LOGGED_REFUSALS_PER_SECOND)

    def answer(self, config: Config, environ: dict[str, Any], key: str) -> Response:
        repo = config.repo(key) if config.webhooks.enabled else None
        secrets = self._secrets(config, repo) if repo is not None else None
        if repo is None or secrets is None:
            log.debug("hook for %r: no such hook", key[:200])
            return plain("404 Not Found", "not found")
        delivery = hook_forges.describe(environ)
        done = (self._refusal(config, environ, repo)
                or self._verified(config, environ, repo, secrets, delivery))
        level = (logging.ERROR if done.status.startswith("5") else
                 logging.WARNING if done.outcome.startswith("refused") else logging.INFO)
        if level == logging.INFO or self._refusals.admit():
            _journal(environ, repo, delivery, done, level)
        return plain(done.status, done.message or done.outcome, list(done.headers))

    @staticmethod
    def _secrets(config: Config, repo: RepoConfig) -> tuple[bytes, ...] | None:
        if repo.webhook_secret is None:
            return None
        try:
            return webhook_secrets.read(config, repo)
        except CredentialError as error:  # the admin's problem; the caller still sees a plain 404
            log.warning("webhook for %s: %s", repo.key, error, extra={"REPO": repo.key})
            return None

    def _refusal(self, config: Config, environ: Mapping[str, Any], repo: RepoConfig) -> _Outcome | None:
        """A refusal decided on the headers alone, before the body is read; else None."""
        if environ.get("REQUEST_METHOD") != "POST":
            return _Outcome("405 Method Not Allowed", "refused:method", "webhooks are POSTed",
                            (("Allow", "POST"),))
        text = str(environ.get("CONTENT_LENGTH") or "").strip()
        if not text.isdigit():
            return _Outcome("411 Length Required", "refused:no length", "a Content-Length is required")
        if int(text) > config.webhooks.max_body:
            return _Outcome("413 Content Too Large", "refused:too large",
                            f"the body is larger than {config.webhooks.max_body} bytes (webhooks.max_body)")
        wait = self.failed.retry_after(_failure_key(environ, repo))
        if wait:
            return _Outcome("429 Too Many Requests", "refused:too many failures",
                            f"too many failed attempts; retry in {wait} s", (("Retry-After", str(wait)),))
        return None

    def _verified(self, config: Config, environ: Mapping[str, Any], repo: RepoConfig,
                  secrets: tuple[bytes, ...], delivery: hook_forges.Delivery) -> _Outcome:
        length = int(environ["CONTENT_LENGTH"])
        body = environ["wsgi.input"].read(length) if length else b""
        if len(body) != length:
            return _Outcome("400 Bad Request", "refused:short body", "the body is shorter than its length")
        why = hook_forges.verify(environ, body, secrets)
        if why:
            self.failed.failed(_failure_key(environ, repo))
            return _Outcome("401 Unauthorized", f"refused:{why}", "missing or wrong signature",
                            (("WWW-Authenticate", 'HMAC realm="pypi-insiders"'),))
        kind = hook_forges.classify(delivery, hook_forges.payload(environ, body))
        done = _accepted(config, repo, delivery, kind)
        last = deliveries.LastDelivery(time.time(), delivery.forge, delivery.event, delivery.delivery,
                                       done.outcome)
        try:
            deliveries.record(deliveries.deliveries_dir(config.paths.state), repo.key, last)
        except OSError as error:
            log.warning("webhook for %s: cannot record the delivery: %s", repo.key, error,
                        extra={"REPO": repo.key})
        return done


def _failure_key(environ: Mapping[str, Any], repo: RepoConfig) -> str:
    """Failures count per client (an IPv6 client's /64) and hook, as logins count per user."""
    return failure_key(str(environ.get("REMOTE_ADDR") or "-"), f"hook:{repo.key}")


def _accepted(config: Config, repo: RepoConfig, delivery: hook_forges.Delivery, kind: str) -> _Outcome:
    """An authenticated delivery: never a 4xx from here on."""
    store = deliveries.deliveries_dir(config.paths.state)
    if kind == "ping":
        return _Outcome("200 OK", "pong")
    if kind == "ignored":
        return _Outcome("202 Accepted", "ignored")
    if delivery.delivery and not deliveries.first_time(store, delivery.delivery):
        return _Outcome("200 OK", "duplicate")
    try:
        made = fetch_queue.enqueue(fetch_queue.queue_dir(config.paths.state), repo.key)
    except OSError as error:
        if delivery.delivery:
            deliveries.forget(store, delivery.delivery)
        log.error("webhook for %s: cannot queue a fetch: %s", repo.key, error, extra={"REPO": repo.key})
        return _Outcome("503 Service Unavailable", "failed:queue unwritable",
                        "cannot queue the fetch; the next timer run fetches the repository")
    return _Outcome("202 Accepted", "queued" if made else "coalesced")


def _journal(environ: Mapping[str, Any], repo: RepoConfig, delivery: hook_forges.Delivery, done: _Outcome,
             level: int) -> None:
    client = str(environ.get("REMOTE_ADDR") or "-")
    log.log(level, "webhook %s from %s: %s %s %s -> %s", repo.key, client, delivery.forge,
            delivery.event or "-", delivery.delivery or "-", done.outcome,
            extra={"REPO": repo.key, "FORGE": delivery.forge, "EVENT": delivery.event,
                   "DELIVERY": delivery.delivery, "OUTCOME": done.outcome, "STATUS": done.status[:3],
                   "CLIENT": client})
