"""Secrets never leave the server: mask them in provider configs shown by inspect, and scrub
them from every error message (``LlamdaError.message`` passes through :func:`scrub`).

Generic, not per provider: a value is secret by its key name (``api_key``, ``token``,
``password``, anything under ``*headers``...), by its shape (``Bearer ...``, ``sk-...``, AWS
access keys, JWTs, long random strings) or by being a URL part that carries credentials
(userinfo, query values). Config secrets are also remembered so their exact values are scrubbed
from error text; the request's own provider-data values are scrubbed the same way.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "**********"
# Words of key names whose values are secret. ``*_parameter`` / ``*_arn`` name where a secret
# lives (an SSM name, a Secrets Manager ARN): that does not reveal it, so they are shown.
_SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "pass",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "signature",
        "sig",
        "cookie",
        "session",
        "bearer",
        "private",
    }
)
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_REFERENCE_KEY = re.compile(r"(_parameter|_arn|_name)$", re.IGNORECASE)
# Containers whose every value is secret-bearing (e.g. extra_headers: {Authorization: ...}).
_SECRET_CONTAINER = re.compile(r"(headers|storage_options|credentials)$", re.IGNORECASE)
# Shapes of secrets wherever they appear in text.
_SHAPES = re.compile(
    r"(?:(?<=Bearer )|(?<=Basic )|(?<=Token ))[^\s'\"]+"  # an auth scheme's credential
    r"|\b(?:sk|pk|rk)-[A-Za-z0-9_-]{8,}"  # OpenAI-style keys
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"  # AWS access key ids
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWTs
    r"|\b(?:ghp|gho|hf|xox[abp]|fw|glpat)[_-][A-Za-z0-9_-]{8,}",  # common token prefixes
    re.IGNORECASE,
)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]{1,15}://[^\s'\"<>]+", re.IGNORECASE)
_TOKENISH = re.compile(r"^[A-Za-z0-9_+/=-]{24,}$")
_MIN_REMEMBERED = 6  # shorter values would scrub ordinary words

_known: set[str] = set()


def _switches(text: str) -> int:
    """How often the text flips between letters and digits (random keys flip a lot)."""
    kinds = [c.isdigit() for c in text if c.isalnum()]
    return sum(a != b for a, b in itertools.pairwise(kinds))


def _secret_key(key: str) -> bool:
    """``api_key``, ``x-api-key``, ``Authorization``, ``accessKeyId``... but not
    ``keywords``; and not ``*_parameter``/``*_arn``/``*_name``, which only say where a secret
    is kept."""
    if _REFERENCE_KEY.search(key):
        return False
    return any(word.lower() in _SECRET_WORDS for word in _WORD_SPLIT.split(key) if word)


def looks_secret(value: str) -> bool:
    """A value that is a credential by its shape alone (long, random, or a known format)."""
    if _SHAPES.search(value):
        return True
    # Long random strings (hex/base64 keys). Model ids are long too, but have words, slashes
    # or dots, and rarely flip between letters and digits.
    return bool(_TOKENISH.match(value)) and _switches(value) * 6 >= len(value)


def mask_url(url: str) -> str:
    """The URL without its credentials: userinfo, query values and fragment are masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return MASK
    if not parts.scheme or host is None:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK) for k, _ in pairs], safe="*") if pairs else MASK
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _mask_string(value: str) -> str:
    if _URL.fullmatch(value.strip()):
        return mask_url(value.strip())
    if looks_secret(value):
        return MASK
    return _URL.sub(lambda m: mask_url(m.group(0)), value)


def mask_config(value: Any, key: str = "", secret: bool = False) -> Any:
    """A JSON-like config with every secret-bearing value masked (keys are kept)."""
    if isinstance(value, dict):
        inner = secret or bool(_SECRET_CONTAINER.search(key))
        return {k: mask_config(v, str(k), inner) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_config(v, key, secret) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    if hasattr(value, "get_secret_value"):  # pydantic SecretStr
        return MASK
    text = str(value)
    if secret or _secret_key(key):
        return MASK if text else text
    return _mask_string(text)


def secret_values(value: Any, key: str = "", secret: bool = False) -> Iterable[str]:
    """Every value :func:`mask_config` would hide, and the credential parts of URLs in it."""
    if isinstance(value, dict):
        inner = secret or bool(_SECRET_CONTAINER.search(key))
        for k, v in value.items():
            yield from secret_values(v, str(k), inner)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from secret_values(v, key, secret)
    elif hasattr(value, "get_secret_value"):  # pydantic SecretStr
        if value.get_secret_value():
            yield value.get_secret_value()
    elif isinstance(value, str) and value:
        if secret or _secret_key(key) or looks_secret(value):
            yield value
        for match in _URL.finditer(value):
            try:
                parts = urlsplit(match.group(0))
            except ValueError:
                continue
            if parts.password:
                yield parts.password
            if parts.username and "@" in parts.netloc:
                yield parts.username
            yield from (v for _, v in parse_qsl(parts.query, keep_blank_values=True) if v)


def remember(values: Iterable[str]) -> None:
    """Secrets of the loaded config: scrubbed verbatim from any error text."""
    _known.update(v for v in values if len(v) >= _MIN_REMEMBERED)


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` without known secrets, ``extra`` values (the request's own credentials),
    credential-shaped tokens or URL credentials."""
    if not text:
        return text
    for secret in sorted({*_known, *(v for v in extra if len(v) >= 4)}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _SHAPES.sub(MASK, text)
    return _URL.sub(lambda m: mask_url(m.group(0)), text)
