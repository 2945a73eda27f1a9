"""The controller authenticates itself to runners on every call: signed answers (`runner.signature`),
and HTTPS with a private CA.

A runner acts only on answers signed with the key of its own credential: a server that is not its
controller (here a real HTTP server on 127.0.0.1 that answers like one) gets no task run, and a
changed answer is refused. Over HTTPS, a runner given the controller's CA registers and runs a
task; one without it refuses the controller and says how to fix it."""

from __future__ import annotations

import datetime
import ipaddress
import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from runner import signature
from runner.client import ControllerError, HttpPeer, Unverified, register as register_runner
from runner.protocol import LeaseLost
from tests.api.conftest import Api
from tests.processes import ROOT, ControllerProcess, clarity_env, free_port, wait_until
from tests.runners.conftest import PROTO, register, runner_post, start_run, token

# --- the signature itself -------------------------------------------------------------------


def test_a_signature_covers_key_method_verb_nonce_status_and_body() -> None:
    key, nonce = signature.key_of("clrc_secret"), signature.new_nonce()
    good = signature.sign(key, "POST", "lease", nonce, 200, b'{"a":1}')
    assert signature.verify(key, "POST", "lease", nonce, 200, b'{"a":1}', good)
    assert signature.sign(key, "POST", "lease", nonce, 200, [b'{"a"', b":1}"]) == good  # chunks: same signature
    for changed in [(signature.key_of("clrc_other"), "POST", "lease", nonce, 200, b'{"a":1}'),
                    (key, "GET", "lease", nonce, 200, b'{"a":1}'),
                    (key, "POST", "heartbeat", nonce, 200, b'{"a":1}'),
                    (key, "POST", "lease", signature.new_nonce(), 200, b'{"a":1}'),
                    (key, "POST", "lease", nonce, 204, b'{"a":1}'),
                    (key, "POST", "lease", nonce, 200, b'{"a":2}')]:
        assert not signature.verify(*changed, good), changed
    assert not signature.verify(key, "POST", "lease", nonce, 200, b'{"a":1}', None)
    assert good.startswith("v1=")


# --- the controller signs --------------------------------------------------------------------


def _signed(resp: Any, key: bytes, verb: str, method: str = "POST") -> bool:
    nonce = resp.request.headers[signature.NONCE_HEADER]
    return signature.verify(key, method, verb, nonce, resp.status_code, resp.content,
                            resp.headers.get(signature.SIGNATURE_HEADER))


def test_every_answer_a_runner_acts_on_is_signed_with_its_credential(api: Api, source_repo: Path) -> None:
    secret = token(api)
    nonce = {signature.NONCE_HEADER: signature.new_nonce()}
    resp = api.client.post("/api/v1/runner/register", json={"token": secret, "name": "r1", "labels": ["linux"]},
                           headers={**PROTO, **nonce})
    assert resp.status_code == 201 and _signed(resp, signature.key_of(secret), "register")
    credential = resp.json()["credential"]
    key = signature.key_of(credential)

    def post(verb: str, body: dict[str, Any], cred: str = credential) -> Any:
        return api.client.post(f"/api/v1/runner/{verb}", json=body, headers={
            **PROTO, "Authorization": f"Bearer {cred}", signature.NONCE_HEADER: signature.new_nonce()})

    hello = post("hello", {})
    assert hello.status_code == 200 and _signed(hello, key, "hello")
    assert not _signed(hello, signature.key_of(secret), "hello")  # the credential's key, not the token's
    nothing = post("lease", {"wait_s": 0})
    assert nothing.status_code == 204 and _signed(nothing, key, "lease")

    start_run(api, source_repo)
    lease = post("lease", {"wait_s": 5})
    assert lease.status_code == 200 and _signed(lease, key, "lease")
    lease_id = lease.json()["lease_id"]
    beat = post("heartbeat", {"lease_id": lease_id})
    assert beat.status_code == 200 and _signed(beat, key, "heartbeat")

    other = register(api, "r2")  # another runner's view of that lease: lost, and signed for it
    lost = post("heartbeat", {"lease_id": lease_id}, other)
    assert lost.status_code == 409 and lost.json()["error"]["code"] == "lease_lost"
    assert _signed(lost, signature.key_of(other), "heartbeat") and not _signed(lost, key, "heartbeat")

    # without a nonce there is nothing to sign; a refused credential gets no signature either
    plain = runner_post(api, "hello", {}, credential)
    assert plain.status_code == 200 and signature.SIGNATURE_HEADER not in plain.headers
    refused = post("hello", {}, "clrc_notarealcredential")
    assert refused.status_code == 401 and signature.SIGNATURE_HEADER not in refused.headers


def test_the_runner_client_checks_every_answer(api: Api, source_repo: Path, tmp_path: Path) -> None:
    """HttpPeer against the real app: a signed answer is taken; the same answer under another
    runner's key (a server that does not hold this credential) is refused."""
    credential = register(api, "r1")
    peer = HttpPeer(str(api.client.base_url), credential, client=api.client)
    assert peer.hello()["name"] == "r1"
    assert peer.lease("r1", ["linux"], 0) is None
    start_run(api, source_repo)
    lease = peer.lease("r1", ["linux"], 5)
    assert lease is not None
    peer.heartbeat(lease.lease_id)

    impostor = HttpPeer(str(api.client.base_url), credential, client=api.client)
    impostor._key = signature.key_of("clrc_what-a-rogue-server-would-sign-with")
    with pytest.raises(Unverified, match="not signed by the controller this runner registered with"):
        impostor.heartbeat(lease.lease_id)
    with pytest.raises(Unverified):
        impostor.lease("r1", ["linux"], 0)

    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "app.bin").write_bytes(b"built")
    ref = peer.put_artifacts(lease.lease_id, tmp_path / "dist")
    peer.get_artifacts(lease.lease_id, ref, tmp_path / "got")
    assert (tmp_path / "got" / "app.bin").read_bytes() == b"built"
    with pytest.raises(Unverified, match="are not signed by the controller"):
        impostor.get_artifacts(lease.lease_id, ref, tmp_path / "not-trusted")
    assert not (tmp_path / "not-trusted").exists()  # nothing unpacked from an answer not proven


# --- a server that is not the controller ----------------------------------------------------------

SPEC = {"run_id": 1, "task": "evil", "image": "clarity-busybox:latest", "commands": ["echo pwned"], "env": {}}


class Rogue(BaseHTTPRequestHandler):
    """Answers the runner protocol like a controller, without the runner's credential: it can only
    guess a key. Records what it was asked."""

    calls: list[str] = []
    sign_with: bytes | None = None

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        verb = self.path.rsplit("/", 1)[-1]
        self.calls.append(verb)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status, body = 200, b"{}"
        if verb == "register":
            status, body = 201, json.dumps({"credential": "clrc_rogue0000000000", "runner": {"name": "x"}}).encode()
        elif verb == "hello":
            body = json.dumps({"name": "victim", "labels": ["linux"], "capacity": 1}).encode()
        elif verb == "lease":
            body = json.dumps({"lease_id": "l1", "spec": SPEC, "expires_at": time.time() + 30}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        nonce = self.headers.get(signature.NONCE_HEADER, "")
        if self.sign_with is not None:
            self.send_header(signature.SIGNATURE_HEADER,
                             signature.sign(self.sign_with, "POST", verb, nonce, status, body))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rogue() -> Iterator[str]:
    Rogue.calls = []
    Rogue.sign_with = signature.key_of("clrc_a-guess")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Rogue)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_that_is_not_the_controller_gets_no_task_run(rogue: str) -> None:
    peer = HttpPeer(rogue, "clrc_victim-credential")
    with pytest.raises(Unverified):
        peer.lease("victim", ["linux"], 0)
    with pytest.raises(Unverified):
        peer.hello()
    Rogue.sign_with = None  # unsigned: the same
    with pytest.raises(Unverified):
        peer.lease("victim", ["linux"], 0)
    with pytest.raises(Unverified):  # registration is answered under the token's key
        register_runner(rogue, "clrt_token", name="n", labels=None, capacity=1, version=None)
    assert isinstance(Unverified("x"), ControllerError) and not isinstance(Unverified("x"), LeaseLost)


def test_a_runner_process_refuses_a_server_that_is_not_its_controller(rogue: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "runner.json").write_text(json.dumps({"controller": rogue, "name": "victim",
                                                   "credential": "clrc_victim-credential"}))
    done = subprocess.run([sys.executable, "-m", "runner.main", "--state-dir", str(state)],
                          env=clarity_env(tmp_path / "home"), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "is not signed by the controller this runner registered with" in done.stderr
    assert "Traceback" not in done.stderr
    assert Rogue.calls == ["hello"]  # it stopped there: never asked for a task


# --- HTTPS with a private CA --------------------------------------------------------------------


def make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA, and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Clarity test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_the_controller_refuses_half_a_tls_setting_and_a_key_of_another_certificate(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
    env = clarity_env(tmp_path / "home", CLARITY_TLS_CERT_FILE=str(cert))
    done = subprocess.run([sys.executable, "-m", "controller.cli", "controller", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "tls_key_file" in done.stderr and "Traceback" not in done.stderr, done.stderr
    other = tmp_path / "other"
    other.mkdir()
    _, _, other_key = make_ca_and_cert(other)
    env = clarity_env(tmp_path / "home", CLARITY_TLS_CERT_FILE=str(cert), CLARITY_TLS_KEY_FILE=str(other_key))
    done = subprocess.run([sys.executable, "-m", "controller.cli", "controller", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "cannot serve HTTPS" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.docker
def test_over_https_a_runner_with_the_ca_runs_a_task_and_one_without_is_told_why(tmp_path: Path,
                                                                                docker_client: Any) -> None:
    from tests.runners.test_runners_process import REPOS, make_repo, trigger

    ca, cert, key = make_ca_and_cert(tmp_path)
    home = tmp_path / "home"
    controller = ControllerProcess(home, tmp_path / "controller.log", env=clarity_env(
        home, CLARITY_TLS_CERT_FILE=str(cert), CLARITY_TLS_KEY_FILE=str(key), CLARITY_CA_FILE=str(ca),
        CLARITY_REAP_INTERVAL_S="1"))
    controller.start()
    proc = None
    try:
        assert controller.url.startswith("https://")
        assert (home / "controller-url").read_text().strip() == controller.url
        env = {k: v for k, v in controller.env.items() if not k.startswith("CLARITY_TLS") and k != "CLARITY_CA_FILE"}

        # no CA: refused with the reason and the fix, and nothing saved
        untrusted = subprocess.run([sys.executable, "-m", "runner.main", "--controller", controller.url, "--token",
                                    controller.token(), "--state-dir", str(tmp_path / "s0")], env=env,
                                   capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert untrusted.returncode == 2, untrusted.stderr
        assert "certificate is not trusted: pass its CA with --ca-file" in untrusted.stderr
        assert "Traceback" not in untrusted.stderr and not (tmp_path / "s0" / "runner.json").exists()

        REPOS.append(make_repo(tmp_path, controller.env))
        log = tmp_path / "runner.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "runner.main", "--controller", controller.url, "--token",
                                     controller.token(), "--ca-file", str(ca), "--state-dir", str(tmp_path / "s1"),
                                     "--name", "tls-1"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        assert json.loads((wait_until(lambda: (tmp_path / "s1" / "runner.json").exists() and tmp_path / "s1" /
                                      "runner.json", log.read_text)).read_text())["ca_file"] == str(ca)
        with controller.api() as api:
            run_id = trigger(api, ".clarity/ci.yaml")
            run = wait_until(lambda: (r := api.get(f"/api/v1/runs/{run_id}").json())["state"]
                             not in ("queued", "running") and r, log.read_text, timeout=90)
            assert run["state"] == "succeeded", (run, log.read_text())
            lines = [entry["line"] for entry in api.get(f"/api/v1/runs/{run_id}/logs").json()["lines"]]
            assert "hello from a remote runner" in lines

        # the command line reaches it with CLARITY_CA_FILE
        listed = subprocess.run([sys.executable, "-m", "controller.cli", "runs", "--controller", controller.url],
                                env=controller.env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert listed.returncode == 0 and "remote" in listed.stdout, listed.stderr
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        controller.stop()


def test_tls_settings_name_what_is_wrong(tmp_path: Path) -> None:
    from controller.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="CLARITY_TLS_CERT_FILE='/nonexistent/cert.pem': no such file"):
        Settings.from_env({"CLARITY_HOME": str(tmp_path), "CLARITY_TLS_CERT_FILE": "/nonexistent/cert.pem"})
    _, cert, key = make_ca_and_cert(tmp_path)
    with pytest.raises(SettingsError, match="tls_key_file is set but tls_cert_file is not"):
        Settings.from_env({"CLARITY_HOME": str(tmp_path), "CLARITY_TLS_KEY_FILE": str(key)})
    both = Settings.from_env({"CLARITY_HOME": str(tmp_path), "CLARITY_TLS_CERT_FILE": str(cert),
                              "CLARITY_TLS_KEY_FILE": str(key)})
    assert both.scheme == "https" and both.tls_key_file == key
    assert Settings.from_env({"CLARITY_HOME": str(tmp_path)}).scheme == "http"
