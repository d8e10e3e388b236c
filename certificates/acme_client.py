"""Talking to an ACME CA (Let's Encrypt, pebble) with the ``acme`` library: the panel's only
ACME user.

:class:`AcmeSession` registers (or finds) the account, places an order for some names, has a
:class:`ChallengeSolver` publish the HTTP-01 files or DNS-01 TXT records, answers the
challenges, waits for validation and finalizes. Transient errors (``badNonce``,
``serverInternal``, connection failures) are retried with a short backoff; everything else
becomes an :class:`AcmeError` with a message a person can act on.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

USER_AGENT = "atlassian-panel (acme-python)"
# Problem types worth another try after a pause; everything else is final for this attempt.
TRANSIENT_CODES = {"badNonce", "serverInternal"}


class AcmeError(Exception):
    """The CA refused or failed a request; the message says what and, if known, why."""


class AcmeAccountGone(AcmeError):
    """The CA no longer knows the account (e.g. a test CA restarted): register again."""


class ChallengeSolver(Protocol):
    """Publishes and removes what the CA checks."""

    def http01_publish(self, token: str, key_authorization: str) -> None: ...

    def http01_cleanup(self, token: str) -> None: ...

    def dns01_publish(self, records: dict[str, list[str]]) -> None:
        """``{"_acme-challenge.example.com": [value, ...]}``, all in one batch."""
        ...

    def dns01_cleanup(self, records: dict[str, list[str]]) -> None: ...


@dataclass(frozen=True)
class IssuedCertificate:
    """What the CA issued, split and parsed."""

    certificate_pem: str
    chain_pem: str
    names: list[str]
    issuer: str
    serial: str
    not_before: datetime.datetime
    not_after: datetime.datetime


# --- keys and certificates ----------------------------------------------------------------


def private_key_generate(kind: str = "ec256") -> str:
    """A new private key as PKCS#8 PEM (``ec256`` or ``rsa2048``)."""
    if kind == "rsa2048":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def certificate_parse(fullchain_pem: str) -> IssuedCertificate:
    """Split a PEM bundle into leaf and chain and read the leaf's facts."""
    blocks = [
        "-----BEGIN CERTIFICATE-----"
        + part.split("-----END CERTIFICATE-----")[0]
        + "-----END CERTIFICATE-----\n"
        for part in fullchain_pem.split("-----BEGIN CERTIFICATE-----")[1:]
    ]
    if not blocks:
        raise AcmeError("The CA's answer holds no certificate.")
    leaf = x509.load_pem_x509_certificate(blocks[0].encode())
    try:
        san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    issuer = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return IssuedCertificate(
        certificate_pem=blocks[0],
        chain_pem="".join(blocks[1:]),
        names=list(names),
        issuer=str(issuer[0].value) if issuer else leaf.issuer.rfc4514_string(),
        serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )


def self_signed_generate(names: Sequence[str], key_pem: str, days: int = 90) -> str:
    """A self-signed placeholder certificate for ``names`` (served until the CA's arrives)."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "panel placeholder"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())  # type: ignore[union-attr]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# --- the session --------------------------------------------------------------------------


def _jwk(account_key_pem: str) -> tuple[jose.JWK, jose.JWASignature]:
    key = serialization.load_pem_private_key(account_key_pem.encode(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return jose.JWKEC(key=key), jose.ES256
    return jose.JWKRSA(key=key), jose.RS256


def _problem_text(error: messages.Error) -> str:
    text = error.detail or error.description or str(error)
    if error.subproblems:
        text += (
            " ("
            + "; ".join(
                f"{sp.identifier.value if sp.identifier else ''}: {sp.detail}"
                for sp in error.subproblems
            )
            + ")"
        )
    return f"{error.code or 'error'}: {text}"


class AcmeSession:
    """One conversation with an ACME directory, as one account."""

    def __init__(
        self,
        directory_url: str,
        account_key_pem: str,
        *,
        account_uri: str = "",
        ca_bundle: str | None = None,
        log: Callable[..., None] | None = None,
        tries: int = 4,
        backoff: float = 1.0,
        timeout: float = 120.0,
    ) -> None:
        self.directory_url = directory_url
        self.key, self.alg = _jwk(account_key_pem)
        self.account_uri = account_uri
        self.log = log or (lambda message, **kw: None)
        self.tries = max(1, tries)
        self.backoff = backoff
        self.timeout = timeout
        self.net = client.ClientNetwork(
            self.key,
            alg=self.alg,
            verify_ssl=ca_bundle or True,
            user_agent=USER_AGENT,
            timeout=30,
        )
        self._client: client.ClientV2 | None = None

    # transient errors ------------------------------------------------------------------

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        last: Exception | None = None
        for attempt in range(1, self.tries + 1):
            try:
                return fn()
            except messages.Error as exc:
                if exc.code == "accountDoesNotExist":
                    raise AcmeAccountGone(_problem_text(exc)) from exc
                if exc.code == "rateLimited":
                    raise AcmeError(
                        f"The CA rate-limited the {what}: {_problem_text(exc)}"
                    ) from exc
                if exc.code not in TRANSIENT_CODES:
                    raise AcmeError(f"The CA refused the {what}: {_problem_text(exc)}") from exc
                last = exc
            except (requests.RequestException, errors.ClientError) as exc:
                last = exc
            if attempt < self.tries:
                pause = self.backoff * 2 ** (attempt - 1)
                self.log(
                    f"ACME {what}: transient error ({_short(last)}); retrying in {pause:g} s",
                    level="warning",
                )
                time.sleep(pause)
        raise AcmeError(f"The {what} kept failing after {self.tries} tries: {_short(last)}")

    @property
    def client(self) -> client.ClientV2:
        if self._client is None:
            directory = self._retry(
                "directory request",
                lambda: client.ClientV2.get_directory(self.directory_url, self.net),
            )
            self._client = client.ClientV2(directory, self.net)
        return self._client

    # account ---------------------------------------------------------------------------

    def account_register(self, email: str = "") -> str:
        """Create the account (or find it, if this key already has one); returns its URL."""
        contact = {"email": email} if email else {}
        reg = messages.NewRegistration.from_data(terms_of_service_agreed=True, **contact)
        self.net.account = None
        try:
            regr = self._retry("account registration", lambda: self.client.new_account(reg))
            self.account_uri = regr.uri
        except errors.ConflictError as exc:
            self.account_uri = str(exc.location)
        self.net.account = messages.RegistrationResource(
            uri=self.account_uri, body=messages.Registration()
        )
        self.log(f"ACME account {self.account_uri}")
        return self.account_uri

    def _use_account(self) -> None:
        self.net.account = messages.RegistrationResource(
            uri=self.account_uri, body=messages.Registration()
        )

    # order -----------------------------------------------------------------------------

    def certificate_order(
        self,
        names: Sequence[str],
        private_key_pem: str,
        *,
        challenge: str,
        solver: ChallengeSolver,
        email: str = "",
    ) -> IssuedCertificate:
        """Order a certificate for ``names`` proving control with ``challenge``."""
        if not self.account_uri:
            self.account_register(email)
        self._use_account()
        csr = crypto_util.make_csr(private_key_pem.encode(), list(names))
        try:
            order = self._retry("new order", lambda: self.client.new_order(csr))
        except AcmeAccountGone:
            self.log(
                "The CA does not know the account any more; registering again", level="warning"
            )
            self.account_register(email)
            order = self._retry("new order", lambda: self.client.new_order(csr))
        self.log(f"ACME order {order.uri} for {', '.join(names)}")
        chall_type = challenges.HTTP01 if challenge == "http-01" else challenges.DNS01
        pending: list[tuple[messages.ChallengeBody, Any]] = []
        http_tokens: list[str] = []
        dns_records: dict[str, list[str]] = {}
        for authzr in order.authorizations:
            domain = authzr.body.identifier.value
            if authzr.body.status == messages.STATUS_VALID:
                self.log(f"{domain}: already authorized")
                continue
            challb = next(
                (c for c in authzr.body.challenges if isinstance(c.chall, chall_type)), None
            )
            if challb is None:
                raise AcmeError(f"The CA offers no {challenge} challenge for {domain}.")
            if challenge == "http-01":
                response, validation = challb.response_and_validation(self.key)
                token = challb.chall.encode("token")
                http_tokens.append(token)
                solver.http01_publish(token, validation)
            else:
                response, validation = challb.response_and_validation(self.key)
                dns_records.setdefault(challb.validation_domain_name(domain), []).append(validation)
            pending.append((challb, response))
        try:
            if dns_records:
                solver.dns01_publish(dns_records)
            for challb, response in pending:
                self._retry(
                    "challenge answer",
                    lambda c=challb, r=response: self.client.answer_challenge(c, r),
                )
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.timeout)
            try:
                order = self._retry(
                    "authorization poll", lambda: self.client.poll_authorizations(order, deadline)
                )
            except errors.ValidationError as exc:
                raise AcmeError(_validation_failures(exc)) from exc
            except errors.TimeoutError as exc:
                raise AcmeError(
                    f"The CA did not finish validating within {self.timeout:g} s."
                ) from exc
            self.log("The CA validated every name; finalizing")
            try:
                order = self._retry(
                    "finalization", lambda: self.client.finalize_order(order, deadline)
                )
            except errors.IssuanceError as exc:
                raise AcmeError(f"The CA would not issue: {_problem_text(exc.error)}") from exc
            except errors.TimeoutError as exc:
                raise AcmeError("The CA did not issue the certificate in time.") from exc
        finally:
            for token in http_tokens:
                _quietly(lambda t=token: solver.http01_cleanup(t))
            if dns_records:
                _quietly(lambda: solver.dns01_cleanup(dns_records))
        issued = certificate_parse(order.fullchain_pem)
        self.log(
            f"Issued by {issued.issuer}: serial {issued.serial}, valid until "
            f"{issued.not_after:%Y-%m-%d %H:%M} UTC"
        )
        return issued


def _validation_failures(exc: errors.ValidationError) -> str:
    parts = []
    for authzr in exc.failed_authzrs:
        for chall in authzr.body.challenges:
            if chall.error is not None:
                parts.append(f"{authzr.body.identifier.value}: {_problem_text(chall.error)}")
    return "The CA could not validate: " + "; ".join(parts)


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, messages.Error):
        return _problem_text(exc)
    return (str(exc) or type(exc).__name__)[:300]


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # cleanup must not hide the order's outcome
        logging.getLogger(__name__).warning("ACME challenge cleanup failed", exc_info=True)
