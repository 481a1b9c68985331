"""Tracking and storage URIs as they may be shown: a password or token in a URI must never reach a
terminal, a log file, a report or an MLflow tag, where it outlives the command that used it.

One function decides what is secret (``redact_uri``); ``redact_text`` applies it to every URL in a
free text (an error message, a reason, a traceback), so a library that quotes the URL it failed
to open cannot leak it either."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

HIDDEN = "***"
# Query parameters that carry secrets in database and cloud URLs (psycopg's password=, SAS tokens...).
SECRET_QUERY = re.compile(r"pass|pwd|secret|token|key|sig|credential|auth", re.IGNORECASE)
# A URL inside free text: a scheme, '://', then anything up to whitespace or a quote.
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def redact_uri(uri: str) -> str:
    """``uri`` with its secrets replaced by ``***``: the password of ``user:password@host`` (basic
    auth), a userinfo without a password (often a token, as in ``https://TOKEN@host``), and query
    parameters named like secrets. Anything that is not a URL is returned unchanged."""
    if not uri or "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        netloc, query = parts.netloc, parts.query
    except ValueError:  # not parseable: hide everything between the scheme and the last '@'
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{HIDDEN}@{rest.rsplit('@', 1)[1]}" if "@" in rest else uri
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{HIDDEN}@{host}" if has_password and user else f"{HIDDEN}@{host}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_QUERY.search(k) for k, _ in pairs):
            query = urlencode([(k, HIDDEN if SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*/:")
    if netloc == parts.netloc and query == parts.query:
        return uri  # nothing secret (and ``sqlite:////abs/path`` keeps its four slashes)
    rest = parts.path + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return f"{parts.scheme}://{netloc}{rest}"


def has_secret(uri: str | None) -> bool:
    return bool(uri) and redact_uri(uri) != uri


def redact_text(text: str, uri: str | None = None) -> str:
    """``text`` (an error message, a reason, a traceback) with every URL in it redacted, and, when
    ``uri`` is given, its password and secret query values wherever they appear on their own
    (libraries quote the URL they failed to open, or only its parts)."""
    if not text:
        return text
    text = URL_IN_TEXT.sub(lambda m: redact_uri(m.group(0)), text) if "://" in text else text
    if not uri or "://" not in uri:
        return text
    try:
        parts = urlsplit(uri)
        secrets = [parts.password or ""]
        secrets += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if SECRET_QUERY.search(k)]
        if parts.username and not parts.password:
            secrets.append(parts.username)  # a token as the user part
    except ValueError:
        return text
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, HIDDEN)
    return text
