"""PEP 691 content negotiation: which representation of a simple page a client gets.

Kept apart from the app because it is pure (a header in, a choice out) and because its
results are memoised per distinct header: pip, uv and browsers each send the same few
`Accept` values on every request, so parsing once per value keeps the hot path a dict hit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

from pypi_insiders.simple_api import HTML_MEDIA_TYPE, LATEST_PREFIX, V1_HTML_MEDIA_TYPE, V1_JSON_MEDIA_TYPE


@dataclass(frozen=True)
class Format:
    """One representation we offer: the generated file it comes from and its media type."""

    media_type: str
    suffix: str  # "html" or "json": which generated file holds the bytes

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; charset=utf-8" if self.media_type == HTML_MEDIA_TYPE else self.media_type


HTML: Final = Format(HTML_MEDIA_TYPE, "html")
V1_HTML: Final = Format(V1_HTML_MEDIA_TYPE, "html")
V1_JSON: Final = Format(V1_JSON_MEDIA_TYPE, "json")
# Server preference on ties: plain HTML first, so `*/*` and browsers get the default.
OFFERED: Final = (HTML, V1_HTML, V1_JSON)
OFFERED_TEXT: Final = ", ".join(f.media_type for f in OFFERED)
_BY_TYPE: Final = {f.media_type: f for f in OFFERED}
_MEMO_LIMIT = 512


def _alias(media: str) -> str:
    """PEP 691's `latest` names whichever version the server serves newest: v1 here."""
    return media.replace(LATEST_PREFIX, V1_HTML_MEDIA_TYPE.removesuffix("html"))


def _quality(params: list[str]) -> float | None:
    """The `q=` among an element's parameters (1 when absent); None when malformed or out of range."""
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return None
            return quality if 0.0 <= quality <= 1.0 else None
    return 1.0


def _parse_range(part: str) -> tuple[str, float] | None:
    """One `type/subtype;q=0.5` element; None for junk, which RFC 9110 says to ignore."""
    fields = [f.strip() for f in part.split(";")]
    media = _alias(fields[0].lower())
    quality = _quality(fields[1:])
    if media.count("/") != 1 or quality is None:
        return None
    return media, quality


def accepts_gzip(accept_encoding: str) -> bool:
    """RFC 9110 12.5.3: gzip (x-gzip is its alias) or `*` with a non-zero q; gzip's own entry
    wins over `*`, and a malformed element is ignored."""
    wildcard = False
    for part in accept_encoding.split(","):
        coding, *params = (f.strip().lower() for f in part.split(";"))
        quality = _quality(params)
        if quality is None:
            continue
        if coding in ("gzip", "x-gzip"):
            return quality > 0
        if coding == "*":
            wildcard = quality > 0
    return wildcard


def _match(offer: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """The quality the most specific matching range gives `offer`, and that specificity."""
    kind = offer.split("/", 1)[0]
    best: tuple[int, float] | None = None
    for media, quality in ranges:
        if media == offer:
            specificity = 2
        elif media == f"{kind}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, quality)
    return (best[1], best[0]) if best else (0.0, -1)


def acceptable(accept: str) -> tuple[Format, ...]:
    """Every offered format the header allows, best first; empty when none is (a 406)."""
    ranges = [r for r in (_parse_range(p) for p in accept.split(",") if p.strip()) if r]
    if not ranges:
        return OFFERED
    scored = []
    for preference, offer in enumerate(OFFERED):
        quality, specificity = _match(offer.media_type, ranges)
        if quality > 0:
            scored.append(((quality, specificity, -preference), offer))
    scored.sort(key=lambda item: item[0], reverse=True)
    return tuple(offer for _key, offer in scored)


class Negotiator:
    """`acceptable` memoised per header value and `?format=` query; safe to share across threads."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str], tuple[Format, ...]] = {}

    def choose(self, accept: str, query: str) -> tuple[Format, ...]:
        key = (accept, query)
        found = self._memo.get(key)
        if found is None:
            found = self._compute(accept, query)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()  # a client cycling odd headers must not grow memory
            self._memo[key] = found
        return found

    @staticmethod
    def _compute(accept: str, query: str) -> tuple[Format, ...]:
        """`?format=` wins over `Accept`, as on the public index; an unknown value is a 406."""
        if query:
            # A literal "+" in a media type is far likelier than a form-encoded space.
            wanted = parse_qs(query.replace("+", "%2B")).get("format")
            if wanted:
                chosen = _BY_TYPE.get(_alias(wanted[-1].strip().lower()))
                return (chosen,) if chosen else ()
        return acceptable(accept)
