"""Where a deployment's API key comes from: the config itself, an environment variable or
a secrets file (a Docker or Kubernetes secret mount).

The key is read once, when a worker builds its backend, and handed on as a ``SecretStr``.
Errors name the config key and the place looked at (variable name, file path), never
the value, so a misconfigured worker fails with a message that is safe to log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from turnout.schemas.fleet import ModelDeployment


class CredentialError(RuntimeError):
    """The configured key source does not yield a usable key."""


def resolve_api_key(model_id: str, deployment: ModelDeployment, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The deployment's API key, or None when it names no source (a local server needs none)."""
    if deployment.api_key is not None:
        return _checked(deployment.api_key.get_secret_value(), f"fleet.{model_id}.api_key")
    if deployment.api_key_env:
        key = f"fleet.{model_id}.api_key_env"
        value = (os.environ if environ is None else environ).get(deployment.api_key_env)
        if value is None:
            raise CredentialError(f"{key} names ${deployment.api_key_env}, which is not set")
        return _checked(value, f"{key} (${deployment.api_key_env})")
    if deployment.api_key_file:
        key = f"fleet.{model_id}.api_key_file"
        return _checked(_read_file(Path(deployment.api_key_file).expanduser(), key), f"{key} ({deployment.api_key_file})")
    return None


def _read_file(path: Path, key: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CredentialError(f"{key}: {path} does not exist") from None
    except IsADirectoryError:
        raise CredentialError(f"{key}: {path} is a directory, not a file") from None
    except PermissionError:
        raise CredentialError(f"{key}: {path} is not readable by this user (uid {os.getuid()})") from None
    except OSError as exc:
        raise CredentialError(f"{key}: {path} cannot be read: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass  # raised outside the handler: the decode error quotes bytes of the secret and must not ride along as context
    raise CredentialError(f"{key}: {path} is not UTF-8 text")


def _checked(raw: str, where: str) -> SecretStr:
    """Strip the newline a secrets file or ``echo`` leaves; refuse what cannot be one header value."""
    value = raw.strip()
    if not value:
        raise CredentialError(f"{where} is empty")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise CredentialError(f"{where} holds whitespace or control characters inside the key; expected one token")
    return SecretStr(value)
