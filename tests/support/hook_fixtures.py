"""Webhook deliveries as each forge sends them: headers, signatures and payload shapes."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

from pypi_insiders import fetch_queue

SECRET = "0123456789abcdef0123456789abcdef0123456789abcdef"
ZERO = "0" * 40


def hexmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(event: str, payload: dict[str, Any], secret: str = SECRET, delivery: str | None = None
           ) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return {"Content-Type": "application/json", "X-GitHub-Event": event, "User-Agent": "GitHub-Hookshot/test",
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={hexmac(secret, body)}"}, body


def gitea(event: str, payload: dict[str, Any], secret: str = SECRET, *, forgejo: bool = False
          ) -> tuple[dict[str, str], bytes]:
    """Gitea and Forgejo send the same digest under several names, and a SHA-1 one too."""
    body = json.dumps(payload).encode()
    digest, delivery = hexmac(secret, body), str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "X-Gitea-Event": event, "X-GitHub-Event": event,
               "X-Gitea-Delivery": delivery, "X-GitHub-Delivery": delivery, "X-Gitea-Signature": digest,
               "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}
    if forgejo:
        headers.update({"X-Forgejo-Event": event, "X-Forgejo-Delivery": delivery,
                        "X-Forgejo-Signature": digest, "X-Hub-Signature-256": f"sha256={digest}"})
    return headers, body


def gitlab(payload: dict[str, Any], token: str = SECRET, event: str = "Tag Push Hook"
           ) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return {"Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Token": token,
            "Idempotency-Key": str(uuid.uuid4()), "X-Gitlab-Event-UUID": str(uuid.uuid4())}, body


def bitbucket(payload: dict[str, Any], secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return {"Content-Type": "application/json", "X-Event-Key": "repo:push",
            "X-Request-UUID": str(uuid.uuid4()), "X-Hub-Signature": f"sha256={hexmac(secret, body)}"}, body


def github_tag_push(tag: str = "v1.0") -> dict[str, Any]:
    return {"ref": f"refs/tags/{tag}", "created": True, "deleted": False, "before": ZERO, "after": "a" * 40,
            "repository": {"clone_url": "https://forge.invalid/ignored.git"}}


def tag_shapes() -> dict[str, tuple[dict[str, str], bytes]]:
    """One tag creation from each forge, as it sends it."""
    return {
        "github-push": github("push", github_tag_push()),
        "github-create": github("create", {"ref": "v1.0", "ref_type": "tag"}),
        "gitlab": gitlab({"object_kind": "tag_push", "ref": "refs/tags/v1.0", "before": ZERO,
                          "after": "b" * 40}),
        "forgejo": gitea("push", {"ref": "refs/tags/v1.0", "before": ZERO, "after": "c" * 40}, forgejo=True),
        "gitea": gitea("create", {"ref": "v1.0", "ref_type": "tag", "sha": "c" * 40}),
        "bitbucket": bitbucket({"push": {"changes": [{"old": None,
                                                      "new": {"type": "tag", "name": "v1.0"}}]}}),
    }


def queued(state: Path) -> list[str]:
    return sorted(p.name for p in fetch_queue.queue_dir(state).glob(f"*{fetch_queue.SUFFIX}"))
