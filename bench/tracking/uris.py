"""Tracking and storage URIs as they may be shown: a password or token in a URI must never reach a
terminal, a log file, a report or an MLflow tag, where it outlives the command that used it."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

HIDDEN = "***"
# Query parameters that carry secrets in database and cloud URLs (psycopg's password=, SAS tokens...).
SECRET_QUERY = re.compile(r"pass|pwd|secret|token|key|sig|credential|auth", re.IGNORECASE)


def redact_uri(uri: str) -> str:
    """``uri`` with its secrets replaced by ``***``: the password of ``user:password@host``, a
    userinfo without a password (often a token, as in ``https://TOKEN@host``), and query
    parameters named like secrets. Anything that is not a URL is returned unchanged."""
    if not uri or "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:  # not parseable: hide everything between the scheme and the last '@'
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{HIDDEN}@{rest.rsplit('@', 1)[1]}" if "@" in rest else uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{HIDDEN}@{host}" if has_password else f"{HIDDEN}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_QUERY.search(k) for k, _ in pairs):
            query = urlencode([(k, HIDDEN if SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*/:")
    if netloc == parts.netloc and query == parts.query:
        return uri  # nothing secret (and ``sqlite:////abs/path`` keeps its four slashes)
    rest = parts.path + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return f"{parts.scheme}://{netloc}{rest}"


def redact_text(text: str, uri: str) -> str:
    """``text`` (an error message, say) with every occurrence of ``uri`` and of its password
    replaced by the redacted form: libraries quote the URL they failed to open."""
    if not uri:
        return text
    text = text.replace(uri, redact_uri(uri))
    try:
        password = urlsplit(uri).password
    except ValueError:
        password = None
    if password and len(password) >= 3:
        text = text.replace(password, HIDDEN)
    return text
