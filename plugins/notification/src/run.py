"""Inside the notification task's container: send one notification, by webhook, Slack or email.

`python3 -m plugins.notification.src.run`. The config has exactly one of

- `webhook`: a JSON document (POST or PUT) to an http(s) URL, optionally signed with
  `X-Clarity-Signature: sha256=<hex HMAC-SHA256 of the body bytes>`;
- `slack`: a message to a Slack-compatible incoming webhook (`{"text": ..., ...}`);
- `email`: a plain-text mail through an SMTP server (smtplib; STARTTLS, or implicit TLS on 465).

HTTP: success is a 2xx answer; connection errors, 5xx and 429 are tried again (3 attempts, waiting
0.5 s then 1 s, or a numeric Retry-After up to 10 s). Secrets (signing keys, passwords, a Slack
webhook's URL, query strings) are never printed.

Only the standard library is used: this module is copied into the container.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import smtplib
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses, make_msgid
from typing import Any, Mapping

from plugins.sdk.runtime import PluginError, is_file_ref, load_data, main

CHANNELS = ("webhook", "slack", "email")
KEYS = {
    "webhook": {"url", "method", "payload", "headers", "secret", "timeout_s"},
    "slack": {"url", "text", "channel", "username", "blocks", "timeout_s"},
    "email": {"host", "port", "starttls", "username", "password", "from", "to", "cc", "subject", "body",
              "timeout_s"},
}
ATTEMPTS = 3
BACKOFF = (0.5, 1.0)  # seconds before the 2nd and the 3rd attempt
MAX_RETRY_AFTER = 10.0
ANSWER_BYTES = 500  # of an answer shown in an error
HTTP_TIMEOUT_S = 10.0
SMTP_TIMEOUT_S = 30.0
SIGNATURE_HEADER = "X-Clarity-Signature"
USER_AGENT = "Clarity-Notification/1.0"
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")


# --- config helpers ------------------------------------------------------------------------------

def _section(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    given = [c for c in CHANNELS if c in config]
    unknown = sorted(set(config) - set(CHANNELS))
    if unknown:
        raise PluginError(f"config: unknown key '{unknown[0]}'; give exactly one of webhook, slack or email")
    if len(given) != 1:
        raise PluginError("config: give exactly one of webhook, slack or email"
                          + (f" (got {', '.join(given)})" if given else ""))
    channel = given[0]
    section = config[channel]
    if not isinstance(section, dict):
        raise PluginError(f"{channel}: expected a mapping of its keys ({', '.join(sorted(KEYS[channel]))})")
    extra = sorted(set(section) - KEYS[channel])
    if extra:
        raise PluginError(f"{channel}: unknown key '{extra[0]}'; known: {', '.join(sorted(KEYS[channel]))}")
    return channel, section


def _text(section: Mapping[str, Any], key: str, what: str, *, required: bool = False,
          default: str | None = None) -> str | None:
    value = section.get(key)
    if value is None:
        if required:
            raise PluginError(f"{what}.{key} is required")
        return default
    if not isinstance(value, str) or (required and not value):
        raise PluginError(f"{what}.{key}: expected a non-empty string")
    return value


def _timeout(section: Mapping[str, Any], what: str, default: float) -> float:
    value = section.get("timeout_s", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 300:
        raise PluginError(f"{what}.timeout_s: expected a number of seconds, more than 0 and at most 300")
    return float(value)


# --- HTTP ----------------------------------------------------------------------------------------

class _Target:
    """An http(s) URL, split into what is requested and what may be shown."""

    def __init__(self, url: str, what: str, *, secret_path: bool) -> None:
        if any(c.isspace() or ord(c) < 32 for c in url):
            raise PluginError(f"{what}.url: the URL holds a space or a control character")
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            shown = f"'{scheme}://'" if scheme else "a URL without a scheme"
            raise PluginError(f"{what}.url: only http:// and https:// URLs are allowed, not {shown}")
        host = parts.netloc.rpartition("@")[2]
        try:
            parts.port  # noqa: B018  (a bad port raises)
        except ValueError:
            raise PluginError(f"{what}.url: the port of {scheme}://{host} is not a number from 1 to 65535") from None
        if not parts.hostname:
            raise PluginError(f"{what}.url: the URL has no host; write {scheme}://HOST/PATH")
        self.auth: str | None = None
        if "@" in parts.netloc:  # user:password@host: sent as Basic authorization, never shown
            userinfo = urllib.parse.unquote(parts.netloc.rpartition("@")[0])
            self.auth = "Basic " + base64.b64encode(userinfo.encode("utf-8")).decode("ascii")
        self.url = urllib.parse.urlunsplit((scheme, host, parts.path or "/", parts.query, ""))
        self.shown = (f"{scheme}://{host}/…" if secret_path
                      else f"{scheme}://{host}{parts.path or '/'}{'?…' if parts.query else ''}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is an answer (not a success), not a hop to somewhere else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def _retry_after(value: str | None) -> float | None:
    if value and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return min(float(value), MAX_RETRY_AFTER)
    return None


def _snippet(data: bytes) -> str:
    text = data[:ANSWER_BYTES].decode("utf-8", errors="replace").strip()
    return text or "(an empty answer)"


def _send_http(label: str, target: _Target, method: str, body: bytes, headers: Mapping[str, str],
               timeout: float) -> tuple[int, int]:
    """(status, attempts) of the first 2xx answer; PluginError otherwise."""
    opener = urllib.request.build_opener(_NoRedirect)
    where = f"{method} {target.shown}"
    for attempt in range(1, ATTEMPTS + 1):
        wait: float | None = None
        try:
            request = urllib.request.Request(target.url, data=body, method=method, headers=dict(headers))
            with opener.open(request, timeout=timeout) as answer:
                answer.read(ANSWER_BYTES)
                return answer.status, attempt
        except urllib.error.HTTPError as e:
            status = e.code
            try:
                text = _snippet(e.read(ANSWER_BYTES))
            except (OSError, http.client.HTTPException):
                text = "(the answer could not be read)"
            problem = f"{where} answered {status} {e.reason or ''}".rstrip() + f": {text}"
            retry = status >= 500 or status == 429
            wait = _retry_after(e.headers.get("Retry-After")) if e.headers is not None else None
        except ValueError as e:  # a header value or a URL http.client refuses
            raise PluginError(f"{label}: cannot send {where}: {e}") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise PluginError(f"{label}: the TLS certificate of {target.shown} was refused: "
                                  f"{reason.verify_message or reason}") from None
            problem = f"could not reach {target.shown}: {reason}"
            retry = True
        except (OSError, http.client.HTTPException) as e:  # a timeout or a connection dropped mid-answer
            what = "no answer in time" if isinstance(e, (TimeoutError, socket.timeout)) else f"{type(e).__name__}: {e}"
            problem = f"{where} failed: {what}"
            retry = True
        if not retry:
            raise PluginError(f"{label}: {problem}")
        if attempt == ATTEMPTS:
            raise PluginError(f"{label}: {problem} (after {ATTEMPTS} attempts)")
        delay = wait if wait is not None else BACKOFF[attempt - 1]
        print(f"{label}: {problem}; trying again in {delay:g} s (attempt {attempt + 1} of {ATTEMPTS})",
              file=sys.stderr, flush=True)
        time.sleep(delay)
    raise AssertionError("unreachable")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def signature(body: bytes, secret: str) -> str:
    """The X-Clarity-Signature value of `body`: sha256=<hex HMAC-SHA256 with the secret as key>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def send_webhook(section: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    target = _Target(_text(section, "url", "webhook", required=True) or "", "webhook", secret_path=False)
    method = section.get("method", "POST")
    if method not in ("POST", "PUT"):
        raise PluginError(f"webhook.method: expected POST or PUT, got {method!r}")
    if "payload" in section:
        payload = load_data(section["payload"], "webhook.payload")
    else:
        payload = {"run_id": context.get("run_id"), "workflow": context.get("workflow"), "task": context.get("task")}
    body = _json_bytes(payload)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if target.auth:
        headers["Authorization"] = target.auth
    given = section.get("headers") or {}
    if not isinstance(given, dict):
        raise PluginError("webhook.headers: expected a mapping of header names to values")
    for name, value in given.items():
        if not _HEADER_NAME.fullmatch(str(name)):
            raise PluginError(f"webhook.headers: '{name}' is not a header name")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise PluginError(f"webhook.headers.{name}: expected a one-line string")
        for old in [k for k in headers if k.lower() == name.lower()]:
            del headers[old]
        headers[name] = value
    secret = section.get("secret")
    if secret is not None:
        if not isinstance(secret, str) or not secret:
            raise PluginError("webhook.secret: expected a non-empty string")
        for old in [k for k in headers if k.lower() == SIGNATURE_HEADER.lower()]:
            del headers[old]
        headers[SIGNATURE_HEADER] = signature(body, secret)
    status, attempts = _send_http("webhook", target, method, body, headers, _timeout(section, "webhook", HTTP_TIMEOUT_S))
    signed = ", signed" if secret else ""
    print(f"notification: webhook {method} {target.shown} answered {status} "
          f"({len(body)} bytes{signed}, {attempts} attempt{'s' if attempts > 1 else ''})", flush=True)
    return {"channel": "webhook", "status": status}


def send_slack(section: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    target = _Target(_text(section, "url", "slack", required=True) or "", "slack", secret_path=True)
    message: dict[str, Any] = {"text": _text(section, "text", "slack", required=True)}
    for key in ("channel", "username"):
        value = _text(section, key, "slack")
        if value:
            message[key] = value
    if section.get("blocks") is not None:
        blocks = section["blocks"]
        if isinstance(blocks, str) and not is_file_ref(blocks):
            raise PluginError("slack.blocks: expected a list of blocks, or a workspace file holding one "
                              "('./slack-blocks.json')")
        blocks = load_data(blocks, "slack.blocks")
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise PluginError("slack.blocks: expected a list of Block Kit blocks (objects)")
        message["blocks"] = blocks
    body = _json_bytes(message)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if target.auth:
        headers["Authorization"] = target.auth
    status, attempts = _send_http("slack", target, "POST", body, headers, _timeout(section, "slack", HTTP_TIMEOUT_S))
    to = f" to {message['channel']}" if "channel" in message else ""
    print(f"notification: slack message posted{to} via {target.shown} ({status}, "
          f"{attempts} attempt{'s' if attempts > 1 else ''})", flush=True)
    return {"channel": "slack", "status": status}


# --- email ---------------------------------------------------------------------------------------

def _addresses(value: Any, what: str) -> list[tuple[str, str]]:
    """(display name, address) of each recipient; a string may hold several, separated by commas."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise PluginError(f"{what}: expected an address or a list of addresses")
    found: list[tuple[str, str]] = []
    for item in items:
        pairs = [p for p in getaddresses([item]) if p != ("", "")]
        if not pairs or not all(_ADDRESS.fullmatch(address) for _, address in pairs):
            raise PluginError(f"{what}: '{item}' is not an email address (write name@example.com or "
                              "'Name <name@example.com>')")
        found.extend(pairs)
    return found


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", errors="replace") if isinstance(message, bytes) else str(message)
    return f"{code} {' '.join(text.split())}".strip()


def _message(section: Mapping[str, Any], sender: tuple[str, str], to: list[tuple[str, str]],
             cc: list[tuple[str, str]], subject: str) -> EmailMessage:
    body = section.get("body", "")
    if body is None:
        body = ""
    if not isinstance(body, str):
        raise PluginError("email.body: expected a string, or a workspace file ('./message.txt')")
    if is_file_ref(body):
        loaded = load_data(body, "email.body")
        body = loaded if isinstance(loaded, str) else json.dumps(loaded, indent=2, default=str)
    msg = EmailMessage()
    try:
        msg["From"] = formataddr(sender)
        msg["To"] = ", ".join(formataddr(a) for a in to)
        if cc:
            msg["Cc"] = ", ".join(formataddr(a) for a in cc)
        msg["Subject"] = subject
    except ValueError as e:  # a line break in a header
        raise PluginError(f"email: a header would break the message: {e}; give subject and addresses on one line") \
            from None
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender[1].rpartition("@")[2])
    msg.set_content(body if body.endswith("\n") or not body else body + "\n")
    return msg


def send_email(section: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    host = _text(section, "host", "email", required=True) or ""
    port = section.get("port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise PluginError("email.port: expected a port number from 1 to 65535")
    starttls = section.get("starttls", False)
    if not isinstance(starttls, bool):
        raise PluginError("email.starttls: expected true or false")
    username = _text(section, "username", "email")
    password = _text(section, "password", "email")
    if (username is None) != (password is None):
        raise PluginError("email: give username and password together, or neither")
    senders = _addresses(_text(section, "from", "email", required=True), "email.from")
    if len(senders) != 1:
        raise PluginError("email.from: give one sender address")
    to = _addresses(section.get("to"), "email.to")
    cc = _addresses(section["cc"], "email.cc") if section.get("cc") is not None else []
    subject = _text(section, "subject", "email", required=True) or ""
    timeout = _timeout(section, "email", SMTP_TIMEOUT_S)
    msg = _message(section, senders[0], to, cc, subject)
    recipients = list(dict.fromkeys(a for _, a in to + cc))
    server = f"{host}:{port}"
    tls = ssl.create_default_context()

    try:
        if port == 465:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=tls)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
    except ssl.SSLError as e:
        raise PluginError(f"TLS with the SMTP server at {server} failed: {e}") from None
    except smtplib.SMTPException as e:  # a greeting other than 220
        raise PluginError(f"the SMTP server at {server} would not talk: {e}") from None
    except OSError as e:  # refused, unknown host, unreachable, timeout
        reason = f"no answer within {timeout:g} s" if isinstance(e, (TimeoutError, socket.timeout)) else e
        raise PluginError(f"could not reach the SMTP server at {server}: {reason}") from None

    step = "greeting"
    with smtp:
        try:
            smtp.ehlo_or_helo_if_needed()
            if starttls and port != 465:
                step = "starttls"
                smtp.starttls(context=tls)
                smtp.ehlo()
            if username is not None and password is not None:
                step = "login"
                if port != 465 and not starttls and host not in ("localhost", "127.0.0.1", "::1"):
                    print(f"warning: logging in to {server} without TLS; set starttls: true, or use port 465",
                          file=sys.stderr, flush=True)
                smtp.login(username, password)
            step = "send"
            refused = smtp.send_message(msg, from_addr=senders[0][1], to_addrs=recipients)
        except smtplib.SMTPAuthenticationError as e:
            raise PluginError(f"the SMTP server at {server} refused the login ({_reply(e.smtp_code, e.smtp_error)}); "
                              "check email.username and email.password") from None
        except smtplib.SMTPNotSupportedError as e:
            if step == "starttls":
                raise PluginError(f"the SMTP server at {server} does not offer STARTTLS; set starttls: false, "
                                  "or use port 465 for implicit TLS") from None
            if step == "login":
                raise PluginError(f"the SMTP server at {server} does not offer a login (AUTH) here"
                                  f"{'' if starttls or port == 465 else ' (many servers offer it only after STARTTLS: set starttls: true)'}") from None
            raise PluginError(f"the SMTP server at {server} refused the mail: {e}") from None
        except smtplib.SMTPRecipientsRefused as e:
            shown = ", ".join(f"{a} ({_reply(*r)})" for a, r in e.recipients.items())
            raise PluginError(f"the SMTP server at {server} refused every recipient: {shown}") from None
        except smtplib.SMTPSenderRefused as e:
            raise PluginError(f"the SMTP server at {server} refused the sender {senders[0][1]} "
                              f"({_reply(e.smtp_code, e.smtp_error)})") from None
        except smtplib.SMTPDataError as e:
            raise PluginError(f"the SMTP server at {server} refused the message ({_reply(e.smtp_code, e.smtp_error)})") \
                from None
        except smtplib.SMTPServerDisconnected as e:
            raise PluginError(f"the SMTP server at {server} closed the connection ({step}): {e}") from None
        except smtplib.SMTPResponseException as e:
            raise PluginError(f"the SMTP server at {server} answered {_reply(e.smtp_code, e.smtp_error)} ({step})") \
                from None
        except smtplib.SMTPException as e:
            raise PluginError(f"the SMTP server at {server} failed ({step}): {e}") from None
        except ssl.SSLError as e:
            raise PluginError(f"TLS with the SMTP server at {server} failed: {e}") from None
        except OSError as e:
            reason = f"no answer within {timeout:g} s" if isinstance(e, (TimeoutError, socket.timeout)) else e
            raise PluginError(f"the connection to the SMTP server at {server} failed ({step}): {reason}") from None

    if refused:
        went = [a for a in recipients if a not in refused]
        shown = ", ".join(f"{a} ({_reply(*r)})" for a, r in refused.items())
        raise PluginError(f"the SMTP server at {server} refused {shown}; the mail went to {', '.join(went)} only")
    print(f"notification: email {subject!r} sent to {', '.join(recipients)} via {server}", flush=True)
    out: dict[str, Any] = {"channel": "email", "status": "sent", "to": [a for _, a in to]}
    if cc:
        out["cc"] = [a for _, a in cc]
    return out


def work(config: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    channel, section = _section(config)
    return {"webhook": send_webhook, "slack": send_slack, "email": send_email}[channel](section, context)


if __name__ == "__main__":
    main(work)
