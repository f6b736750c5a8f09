"""Security headers on every response, chosen once at start-up from the settings.

Most responses are JSON, which a browser should never render, frame or hand to another
site: they get `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`,
`X-Content-Type-Options: nosniff`, a private `Referrer-Policy`, `X-Frame-Options`,
`Cross-Origin-Resource-Policy` and `Cross-Origin-Opener-Policy`. HTML pages (the docs page,
the account pages) set their own, stricter-for-them CSP; a header a route set itself wins
over these defaults, and the others are added around it. Responses to requests that came
over HTTPS (`scope["scheme"]`, already corrected for trusted proxies) also get
`Strict-Transport-Security`: sent over plain HTTP it would mean nothing.

Both lists are built here once; a request picks one by its scheme, so the hot read path
pays a comparison and a list splice.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Scope

from shipyard.settings import Settings

Headers = list[tuple[bytes, bytes]]


def hsts_value(max_age: int, include_subdomains: bool, preload: bool) -> str:
    parts = [f"max-age={max_age}"]
    if include_subdomains:
        parts.append("includeSubDomains")
    if preload:
        parts.append("preload")
    return "; ".join(parts)


class SecurityHeaders:
    """The security headers of a response: `plain` over HTTP, `tls` over HTTPS."""

    def __init__(self, headers: dict[str, str], hsts: str = "") -> None:
        self.plain: Headers = [(k.lower().encode(), v.encode()) for k, v in headers.items() if v]
        self.tls: Headers = [*self.plain, *([(b"strict-transport-security", hsts.encode())] if hsts else [])]  # fmt: skip
        self.names = frozenset(k for k, _ in self.tls)

    @classmethod
    def from_settings(cls, s: Settings) -> SecurityHeaders:
        if not s.security_headers:
            return cls({})
        hsts = ""
        if s.hsts_max_age > 0:
            hsts = hsts_value(s.hsts_max_age, s.hsts_include_subdomains, s.hsts_preload)
        return cls(
            {
                "Content-Security-Policy": s.content_security_policy,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": s.referrer_policy,
                "X-Frame-Options": s.frame_options,
                "Cross-Origin-Resource-Policy": s.cross_origin_resource_policy,
                "Cross-Origin-Opener-Policy": s.cross_origin_opener_policy,
            },
            hsts,
        )

    def select(self, scope: Scope) -> Headers:
        """The headers for a response to this request (not to be mutated)."""
        return self.tls if scope["scheme"] == "https" else self.plain

    def missing(self, present: Sequence[tuple[bytes, bytes]], ours: Headers) -> Headers:
        """`ours` less the headers the response already has (a page's own CSP wins)."""
        names = self.names
        for key, _ in present:
            if key in names:
                break
        else:
            return ours  # the usual case: the route set none of them
        have = {key for key, _ in present}
        return [h for h in ours if h[0] not in have]
