"""Each forge's signature, from the vectors in its documentation, and how its events are read."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from pypi_insiders.web import hook_forges
from pypi_insiders.web.hook_forges import Delivery
from tests.support import hook_fixtures as h

# GitHub's documentation ("Validating webhook deliveries"): this secret and payload give this digest.
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
# RFC 4231, test case 2: HMAC-SHA256 as bare hex, the way Gitea and Forgejo send it.
RFC_KEY, RFC_DATA = b"Jefe", b"what do ya want for nothing?"
RFC_DIGEST = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
# The Standard Webhooks specification's reference vector (GitLab's signing token uses the scheme).
SW_SECRET = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID, SW_TIME, SW_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_hook_forges_vectors_match_hashlib() -> None:
    assert hook_forges.hex_hmac(GITHUB_SECRET, GITHUB_BODY) == GITHUB_SIGNATURE.removeprefix("sha256=")
    assert hook_forges.hex_hmac(RFC_KEY, RFC_DATA) == RFC_DIGEST


@pytest.mark.parametrize(
    ("environ", "secret", "body", "result"),
    [
        ({"HTTP_X_HUB_SIGNATURE_256": GITHUB_SIGNATURE}, GITHUB_SECRET, GITHUB_BODY, ""),
        ({"HTTP_X_HUB_SIGNATURE_256": GITHUB_SIGNATURE.upper().replace("SHA256", "sha256")}, GITHUB_SECRET,
         GITHUB_BODY, ""),
        ({"HTTP_X_HUB_SIGNATURE_256": GITHUB_SIGNATURE}, b"another secret", GITHUB_BODY, "wrong signature"),
        ({"HTTP_X_HUB_SIGNATURE_256": GITHUB_SIGNATURE}, GITHUB_SECRET, b"Hello, World?", "wrong signature"),
        ({"HTTP_X_HUB_SIGNATURE_256": GITHUB_SIGNATURE[7:]}, GITHUB_SECRET, GITHUB_BODY,
         "malformed signature"),
        ({"HTTP_X_HUB_SIGNATURE_256": "md5=" + GITHUB_SIGNATURE[7:]}, GITHUB_SECRET, GITHUB_BODY,
         "not a sha256 signature"),
        ({"HTTP_X_GITEA_SIGNATURE": RFC_DIGEST}, RFC_KEY, RFC_DATA, ""),
        ({"HTTP_X_FORGEJO_SIGNATURE": RFC_DIGEST}, RFC_KEY, RFC_DATA, ""),
        ({"HTTP_X_FORGEJO_SIGNATURE": RFC_DIGEST[:-1]}, RFC_KEY, RFC_DATA, "malformed signature"),
        ({"HTTP_X_HUB_SIGNATURE": f"sha256={RFC_DIGEST}"}, RFC_KEY, RFC_DATA, ""),  # Bitbucket
        # GitHub's legacy SHA-1 header, even when correct, is never enough
        ({"HTTP_X_HUB_SIGNATURE": "sha1=" + hmac.new(RFC_KEY, RFC_DATA, hashlib.sha1).hexdigest()}, RFC_KEY,
         RFC_DATA, "sha1 signature refused"),
        ({"HTTP_X_GITLAB_TOKEN": "Jefe"}, RFC_KEY, RFC_DATA, ""),
        ({"HTTP_X_GITLAB_TOKEN": "jefe"}, RFC_KEY, RFC_DATA, "wrong token"),
        ({}, RFC_KEY, RFC_DATA, "unsigned"),
    ],
)
def test_hook_forges_verify(environ: dict[str, str], secret: bytes, body: bytes, result: str) -> None:
    assert hook_forges.verify(environ, body, (secret,)) == result


def _standard(signature: str = SW_SIGNATURE, **more: str) -> dict[str, str]:
    return {"HTTP_WEBHOOK_ID": SW_ID, "HTTP_WEBHOOK_TIMESTAMP": str(SW_TIME),
            "HTTP_WEBHOOK_SIGNATURE": signature, **more}


@pytest.mark.parametrize(
    ("environ", "secret", "now", "result"),
    [
        (_standard(), SW_SECRET, SW_TIME, ""),
        (_standard(), SW_SECRET, SW_TIME + 300, ""),
        (_standard(f"v1,{'A' * 44} {SW_SIGNATURE}"), SW_SECRET, SW_TIME, ""),  # several: one matches
        (_standard(), SW_SECRET, SW_TIME + 301, "stale timestamp"),
        (_standard(), SW_SECRET, SW_TIME - 301, "stale timestamp"),
        (_standard(), b"whsec_" + base64.b64encode(b"another key of 32 bytes, really!"), SW_TIME,
         "wrong signature"),
        (_standard(), SW_SECRET[6:], SW_TIME, "wrong signature"),  # not a whsec_ secret
        (_standard(SW_SIGNATURE.replace("v1,", "v2,")), SW_SECRET, SW_TIME, "wrong signature"),
        (_standard(HTTP_WEBHOOK_ID=""), SW_SECRET, SW_TIME, "malformed signature"),
        (_standard(HTTP_WEBHOOK_TIMESTAMP="yesterday"), SW_SECRET, SW_TIME, "malformed signature"),
        # the GitLab token beside it is not looked at: the stronger scheme decides
        (_standard(HTTP_X_GITLAB_TOKEN=SW_SECRET.decode()), b"whsec_" + base64.b64encode(b"x" * 32), SW_TIME,
         "wrong signature"),
    ],
)
def test_hook_forges_standard_webhooks(environ: dict[str, str], secret: bytes, now: int, result: str) -> None:
    assert hook_forges.verify(environ, SW_BODY, (secret,), now=now) == result


def test_hook_forges_either_secret_of_a_rotation_verifies() -> None:
    environ = {"HTTP_X_HUB_SIGNATURE_256": GITHUB_SIGNATURE}
    assert hook_forges.verify(environ, GITHUB_BODY, (b"the next secret", GITHUB_SECRET)) == ""
    assert hook_forges.verify(environ, GITHUB_BODY, (GITHUB_SECRET, b"the next secret")) == ""


def test_hook_forges_compare_only_in_constant_time() -> None:
    """No `==` on a digest or a token: in `verify`, `==`/`!=` only ever compare with a literal (a
    header name, an algorithm), and the secrets meet the request only in hmac.compare_digest."""
    tree = ast.parse(Path(hook_forges.__file__).read_text())
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    for name in ("verify", "_hex_signature", "standard_webhook", "_any_equal"):
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                assert all(isinstance(c, ast.Constant) for c in node.comparators), ast.unparse(node)
    calls = [ast.unparse(n.func) for n in ast.walk(functions["_any_equal"]) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls


def _environ(headers: dict[str, str]) -> dict[str, str]:
    return {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()} | {
        "CONTENT_TYPE": headers.get("Content-Type", "")}


@pytest.mark.parametrize("shape", sorted(h.tag_shapes()))
def test_hook_forges_each_forge_tag_creation_is_a_tag(shape: str) -> None:
    headers, body = h.tag_shapes()[shape]
    environ = _environ(headers)
    delivery = hook_forges.describe(environ)
    assert delivery.forge == shape.split("-", maxsplit=1)[0]
    assert delivery.delivery
    assert hook_forges.verify(environ, body, (h.SECRET.encode(),)) == ""
    assert hook_forges.classify(delivery, hook_forges.payload(environ, body)) == "tag"


@pytest.mark.parametrize(
    ("forge", "event", "payload", "kind"),
    [
        ("github", "ping", {"zen": "Keep it logically awesome.", "hook_id": 1}, "ping"),
        ("gitea", "ping", {}, "ping"),
        ("github", "push", {"ref": "refs/heads/main", "after": "a" * 40}, "ignored"),
        ("github", "push", {"ref": "refs/tags/v1", "deleted": True, "after": h.ZERO}, "ignored"),
        ("github", "create", {"ref": "main", "ref_type": "branch"}, "ignored"),
        ("github", "delete", {"ref": "v1", "ref_type": "tag"}, "ignored"),
        ("github", "issues", {"action": "opened"}, "ignored"),
        ("gitlab", "Tag Push Hook", {"object_kind": "tag_push", "after": h.ZERO}, "ignored"),
        ("gitlab", "Push Hook", {"object_kind": "push", "ref": "refs/heads/main"}, "ignored"),
        ("bitbucket", "repo:push", {"push": {"changes": [{"new": {"type": "branch"}}]}}, "ignored"),
        ("bitbucket", "repo:push", {"push": {"changes": [{"new": None, "old": {"type": "tag"}}]}}, "ignored"),
        ("bitbucket", "repo:refs_changed", {"changes": [{"ref": {"type": "TAG"}, "type": "ADD"}]}, "tag"),
        ("unknown", "", {"ref": "refs/tags/v1"}, "ignored"),
    ],
)
def test_hook_forges_classify(forge: str, event: str, payload: dict[str, Any], kind: str) -> None:
    assert hook_forges.classify(Delivery(forge, event, "id"), payload) == kind


def test_hook_forges_form_encoded_github_payload() -> None:
    from urllib.parse import urlencode  # noqa: PLC0415

    body = urlencode({"payload": json.dumps(h.github_tag_push())}).encode()
    environ = {"CONTENT_TYPE": "application/x-www-form-urlencoded"}
    assert hook_forges.classify(Delivery("github", "push", "x"), hook_forges.payload(environ, body)) == "tag"


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b"\xff\xfe"])
def test_hook_forges_unreadable_payload_is_ignored(body: bytes) -> None:
    data = hook_forges.payload({"CONTENT_TYPE": "application/json"}, body)
    assert hook_forges.classify(Delivery("github", "push", "x"), data) == "ignored"


def test_hook_forges_delivery_id_is_printable_and_bounded() -> None:
    delivery = hook_forges.describe({"HTTP_X_GITHUB_EVENT": "push\x1b[31m",
                                     "HTTP_X_GITHUB_DELIVERY": "é" * 500})
    assert delivery.event == "push?[31m"
    assert delivery.delivery == "?" * 128
