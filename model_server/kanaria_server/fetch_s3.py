"""Fetch a model (or reference profile) from an ``s3://bucket/key`` URI.

The download goes through obstore (Python bindings of the Rust ``object_store``
crate, one wheel with no Python dependencies). It reads the settings users of
KServe and Seldon already set, from the environment:

- credentials: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``;
  without them, web identity (``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``, as on
  EKS), container credentials, then the instance metadata service;
  ``AWS_SKIP_SIGNATURE=true`` (or KServe's ``awsAnonymousCredential=true``) sends
  unsigned requests, for public buckets;
- region: ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else us-east-1;
- endpoint of an S3-compatible store: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``
  (``AWS_ENDPOINT``), or KServe's ``S3_ENDPOINT`` (host[:port], https unless
  ``S3_USE_HTTPS=0``). Buckets are addressed by path on such a store, by virtual host
  with ``S3_USER_VIRTUAL_BUCKET=true`` or ``AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true``;
- TLS: ``AWS_CA_BUNDLE`` names a PEM file of extra CAs to trust; ``S3_VERIFY_SSL=0``
  turns certificate verification off.

Profiles in ``~/.aws/config`` are not read (export the keys instead, e.g.
``eval "$(aws configure export-credentials --format env)"``).

Every failure becomes one :class:`ModelLoadError` line that names the reason (no such
bucket or key, access denied, wrong key or secret, unreachable endpoint, untrusted
certificate), since the server's exit line is what the operator and ``kanaria up``
show as the reason a version cannot start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from kanaria_server.errors import ModelLoadError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

SCHEME = "s3://"
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
"""Endpoint overrides, most specific first (obstore reads these itself too)."""
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
MAX_REASON = 300
"""Characters of an unrecognised error kept in the message."""

_CODE_REASONS = {
    "NoSuchBucket": "bucket {bucket!r} does not exist",
    "NoSuchKey": "no object {key!r} in bucket {bucket!r}",
    "InvalidAccessKeyId": "the store does not know the access key id (check AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": (
        "the secret key does not match the access key id (check AWS_SECRET_ACCESS_KEY)"
    ),
    "ExpiredToken": "the session token has expired (AWS_SESSION_TOKEN)",
    "InvalidToken": "the session token is invalid (AWS_SESSION_TOKEN)",
    "TokenRefreshRequired": "the session token has expired (AWS_SESSION_TOKEN)",
    "PermanentRedirect": "the bucket is in another region: set AWS_REGION to its region",
    "AuthorizationHeaderMalformed": (
        "the bucket is in another region: set AWS_REGION to its region"
    ),
    "InvalidBucketName": "{bucket!r} is not a valid bucket name",
    "RequestTimeTooSkewed": "this machine's clock differs too much from the store's",
    "SlowDown": "the store is throttling requests (SlowDown); retry later",
}
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "Forbidden"})


def split(uri: str, what: str = "model") -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://bucket/key`` URI; the key is taken as written."""
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if uri[: len(SCHEME)].lower() != SCHEME or not bucket or not key:
        raise ModelLoadError(
            f"{what} URI {uri!r} must name a bucket and a key: s3://bucket/path/model.onnx"
        )
    return bucket, key


def endpoint(env: Mapping[str, str]) -> str | None:
    """The S3-compatible endpoint configured in ``env``, or None for AWS itself."""
    for name in ENDPOINT_VARIABLES:
        if env.get(name):
            return env[name]
    host = env.get("S3_ENDPOINT")
    if not host:
        return None
    if "://" in host:
        return host
    scheme = "http" if env.get("S3_USE_HTTPS", "1").lower() in _FALSE else "https"
    return f"{scheme}://{host}"


def _flag(env: Mapping[str, str], name: str, values: frozenset[str]) -> bool:
    return env.get(name, "").strip().lower() in values


def options(
    env: Mapping[str, str], timeout_s: float, what: str = "model"
) -> tuple[S3Config, ClientConfig, RetryConfig]:
    """The store, HTTP client and retry settings beyond what obstore reads from ``env``."""
    config: S3Config = {}
    client: ClientConfig = {
        "timeout": timedelta(seconds=timeout_s),
        "connect_timeout": timedelta(seconds=min(timeout_s, 10.0)),
    }
    url = endpoint(env)
    if url is not None:
        config["endpoint"] = url
        # Asking for a plain-http endpoint is consent to plain http.
        if url.lower().startswith("http://"):
            client["allow_http"] = True
    if _flag(env, "S3_USER_VIRTUAL_BUCKET", _TRUE):
        config["virtual_hosted_style_request"] = True
    if _flag(env, "awsAnonymousCredential", _TRUE):
        config["skip_signature"] = True
    if _flag(env, "S3_VERIFY_SSL", _FALSE):
        client["allow_invalid_certificates"] = True
    ca_bundle = env.get("AWS_CA_BUNDLE")
    if ca_bundle:
        try:
            client["root_certificate"] = Path(ca_bundle).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ModelLoadError(
                f"cannot download {what}: cannot read AWS_CA_BUNDLE {ca_bundle}: {reason}"
            ) from exc
    retry: RetryConfig = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=timeout_s),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
            "base": 2,
        },
    }
    return config, client, retry


def credentials(env: Mapping[str, str]) -> str:
    """Where the credentials come from, for messages (never the secret itself)."""
    if _flag(env, "AWS_SKIP_SIGNATURE", _TRUE) or _flag(env, "awsAnonymousCredential", _TRUE):
        return "anonymous requests"
    if env.get("AWS_ACCESS_KEY_ID"):
        return f"access key id {env['AWS_ACCESS_KEY_ID']!r} from AWS_ACCESS_KEY_ID"
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return "web identity from AWS_WEB_IDENTITY_TOKEN_FILE"
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        return "container credentials"
    return "no AWS_ACCESS_KEY_ID set, so instance metadata"


def _tag(text: str, name: str) -> str | None:
    found = re.search(rf"<{name}>([^<]*)</{name}>", text)
    return found.group(1) if found else None


_CREDENTIAL_SERVICES = ("/latest/api/token", "/latest/meta-data", "sts.", "Action=AssumeRole")
"""Parts of a URL that show obstore failed asking for credentials, not fetching the object:
the instance metadata service, STS (web identity)."""
_NO_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_SKIP_SIGNATURE=true for a "
    "public bucket"
)


def _transport(text: str) -> str | None:
    """What went wrong below HTTP (refused, unresolvable, timed out), if that was it."""
    lowered = text.lower()
    if "dns error" in lowered or "failed to lookup address" in lowered:
        return "cannot resolve the host name"
    if "timed out" in lowered or "timedout" in lowered:  # not "timeout": retry_timeout is in all
        return "timed out"
    os_error = re.search(r'message: "([^"]+)"', text)
    if os_error:
        return os_error.group(1)
    if "error sending request" in lowered or "connect" in lowered:
        return "connection failed"
    return None


def reason(exc: BaseException, bucket: str, key: str, env: Mapping[str, str]) -> str:
    """One line saying why obstore could not fetch ``bucket/key``."""
    text = str(exc)
    code = _tag(text, "Code")
    if code in _CODE_REASONS:
        return _CODE_REASONS[code].format(bucket=bucket, key=key)
    if code in _DENIED_CODES:
        return f"access denied to bucket {bucket!r} key {key!r} (credentials: {credentials(env)})"
    status = re.search(r"\bstatus(?: code)?:? (\d{3})\b", text)
    failed = re.search(r"Error performing [A-Z]+ (\S+)", text)
    url = failed.group(1) if failed else ""
    transport = _transport(text)
    if any(part in url for part in _CREDENTIAL_SERVICES) or (
        "credential" in text.lower() and status is None and code is None
    ):
        service = url.split("/latest/")[0] if "/latest/" in url else url or "the provider"
        why = transport or (f"HTTP {status.group(1)}" if status else "no answer")
        return (
            f"no usable credentials ({credentials(env)}; asking {service} failed: {why}): "
            + _NO_CREDENTIALS_HINT
        )
    if "certificate" in text.lower() or "tls handshake" in text.lower():
        found = re.search(r"InvalidCertificate\(\s*(?:Other\(\s*OtherError\(\s*)?(\w+)", text)
        detail = f" ({found.group(1)})" if found else ""
        return (
            f"the endpoint's TLS certificate is not trusted{detail}: set AWS_CA_BUNDLE to a "
            "PEM file of its CA (or S3_VERIFY_SSL=0 to skip verification)"
        )
    if code is not None:
        message = _tag(text, "Message")
        return f"{code}: {message}" if message else code
    if status is not None:
        if status.group(1) == "404":
            return f"no object {key!r} in bucket {bucket!r} (HTTP 404)"
        if status.group(1) == "403":
            return f"access denied (HTTP 403; credentials: {credentials(env)})"
        return f"HTTP {status.group(1)}"
    if transport is not None:
        return f"cannot reach the endpoint ({transport})"
    first = " ".join(text.partition("\n\nDebug source")[0].split())
    return first[:MAX_REASON] or type(exc).__name__


def read_s3(uri: str, timeout_s: float, what: str = "model") -> bytes:
    """The bytes of the object at ``uri``; raises :class:`ModelLoadError` with the reason."""
    bucket, key = split(uri, what)
    env = dict(os.environ)
    where = endpoint(env) or "AWS S3"
    try:
        import obstore  # noqa: PLC0415 (only needed for s3:// models)
        from obstore.store import S3Store  # noqa: PLC0415
    except ImportError as exc:
        raise ModelLoadError(
            f"cannot download {what} {uri}: s3:// needs the obstore package "
            "(pip install 'kanaria[server]')"
        ) from exc
    config, client, retry = options(env, timeout_s, what)
    try:
        store = S3Store(bucket, config=config, client_options=client, retry_config=retry)
        return bytes(obstore.get(store, key).bytes())
    except Exception as exc:  # obstore raises its own classes and builtins (FileNotFoundError)
        raise ModelLoadError(
            f"cannot download {what} {uri} from {where}: {reason(exc, bucket, key, env)}"
        ) from exc
