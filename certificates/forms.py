"""Forms of the DNS pages: a provider account (its settings and its write-only secrets) and a
zone. The services (:mod:`certificates.services.dns_accounts`) check everything again."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from certificates.dns.rfc2136 import ALGORITHMS
from certificates.models import DnsProviderAccount, DnsZone

Kind = DnsProviderAccount.Kind


def _secret(label: str, help_text: str) -> forms.CharField:
    # Never rendered back (not even as dots: their number would tell the secret's length).
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        max_length=500,
        help_text=help_text,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


def _plain(**attrs: Any) -> dict[str, Any]:
    return {"autocomplete": "off", "spellcheck": "false", **attrs}


class DnsAccountForm(forms.Form):
    """A DNS provider account: a name, its kind, the kind's settings and its secrets. Editing
    an account keeps its kind and its stored secrets unless new ones are typed."""

    name = forms.CharField(label="Name", max_length=60, widget=forms.TextInput(attrs=_plain()))
    kind = forms.ChoiceField(label="Provider", choices=Kind.choices)
    # Route53
    region = forms.CharField(
        label="Region",
        required=False,
        max_length=40,
        help_text="Empty: us-east-1 (Route53 is global; the region only signs requests).",
        widget=forms.TextInput(attrs=_plain(placeholder="us-east-1")),
    )
    endpoint_url = forms.URLField(
        label="Endpoint URL",
        required=False,
        max_length=300,
        assume_scheme="https",
        help_text="Only for a Route53-compatible endpoint other than AWS's own.",
        widget=forms.URLInput(attrs=_plain()),
    )
    access_key_id = _secret(
        "Access key ID", "Of an IAM user allowed to change the zones' record sets."
    )
    secret_access_key = _secret("Secret access key", "Stored encrypted; never shown again.")
    # RFC 2136
    server = forms.CharField(
        label="DNS server",
        required=False,
        max_length=253,
        help_text="The primary server that takes dynamic updates (address or name).",
        widget=forms.TextInput(attrs=_plain()),
    )
    port = forms.IntegerField(
        label="Port", required=False, min_value=1, max_value=65535, help_text="Empty: 53."
    )
    tsig_key_name = forms.CharField(
        label="TSIG key name",
        required=False,
        max_length=253,
        widget=forms.TextInput(attrs=_plain()),
    )
    tsig_algorithm = forms.ChoiceField(
        label="TSIG algorithm",
        required=False,
        choices=[(name, name) for name in ALGORITHMS],
        initial="hmac-sha256",
    )
    tsig_secret = _secret(
        "TSIG secret", "Base64, as tsig-keygen prints it. Stored encrypted; never shown again."
    )
    credentials_clear = forms.BooleanField(
        label="Remove the stored secrets",
        required=False,
        help_text="E.g. Route53 through the panel's own AWS role instead of keys.",
    )

    CONFIG_FIELDS = {
        Kind.ROUTE53: ("region", "endpoint_url"),
        Kind.RFC2136: ("server", "port", "tsig_key_name", "tsig_algorithm"),
    }
    SECRET_FIELDS = {
        Kind.ROUTE53: ("access_key_id", "secret_access_key"),
        Kind.RFC2136: ("tsig_secret",),
    }

    def __init__(self, *args: Any, account: DnsProviderAccount | None = None, **kw: Any) -> None:
        self.account = account
        if account is not None and not args and "data" not in kw:
            config = account.config or {}
            initial: dict[str, Any] = {"name": account.name, "kind": account.kind}
            initial.update({f: config.get(f) for f in self.CONFIG_FIELDS[Kind(account.kind)]})
            kw.setdefault("initial", initial)
        super().__init__(*args, **kw)
        if account is None:
            del self.fields["credentials_clear"]
            return
        # The kind of an existing account stays; only its own fields are shown.
        del self.fields["kind"]
        kind = Kind(account.kind)
        for other, names in (*self.CONFIG_FIELDS.items(), *self.SECRET_FIELDS.items()):
            if other != kind:
                for name in names:
                    self.fields.pop(name, None)
        stored = account.credentials or {}
        for name in self.SECRET_FIELDS[kind]:
            if stored.get(name):
                self.fields[name].help_text = "A value is stored. Leave empty to keep it."
        if not any(stored.values()):
            del self.fields["credentials_clear"]

    @property
    def kind_value(self) -> Kind:
        return Kind(self.account.kind if self.account else self.cleaned_data["kind"])

    def _bound(self, kind: Kind) -> list[forms.BoundField]:
        names = (*self.CONFIG_FIELDS[kind], *self.SECRET_FIELDS[kind])
        return [self[name] for name in names if name in self.fields]

    def route53_fields(self) -> list[forms.BoundField]:
        return self._bound(Kind.ROUTE53)

    def rfc2136_fields(self) -> list[forms.BoundField]:
        return self._bound(Kind.RFC2136)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = self.account.kind if self.account is not None else data.get("kind")
        if kind == Kind.RFC2136 and not data.get("server") and "server" not in self.errors:
            self.add_error("server", "Give the DNS server that takes the updates.")
        return data

    def config(self) -> dict[str, Any]:
        """The settings of the chosen kind (empty fields left out); when editing, settings
        this form does not show (set through the API, e.g. ``timeout``) are kept."""
        names = self.CONFIG_FIELDS[self.kind_value]
        kept = {
            k: v for k, v in (self.account.config if self.account else {}).items() if k not in names
        }
        typed = {
            n: self.cleaned_data[n] for n in names if self.cleaned_data.get(n) not in (None, "")
        }
        return {**kept, **typed}

    def credentials(self) -> dict[str, str] | None:
        """The secrets to store: those typed, over the stored ones when editing (None: keep
        what is stored; only the typed ones once "Remove the stored secrets" is ticked)."""
        names = self.SECRET_FIELDS[self.kind_value]
        typed = {n: self.cleaned_data[n] for n in names if self.cleaned_data.get(n)}
        if self.account is None or self.cleaned_data.get("credentials_clear"):
            return typed
        if not typed:
            return None
        return {**(self.account.credentials or {}), **typed}


class DnsZoneForm(forms.Form):
    """A zone the panel manages records in, at one of the accounts."""

    name = forms.CharField(
        label="Zone",
        max_length=253,
        help_text="e.g. example.com: instance hostnames in it get their records made.",
        widget=forms.TextInput(attrs=_plain()),
    )
    account: forms.ModelChoiceField[DnsProviderAccount] = forms.ModelChoiceField(
        label="Provider account", queryset=DnsProviderAccount.objects.none(), empty_label=None
    )
    provider_zone_id = forms.CharField(
        label="Provider's zone id",
        required=False,
        max_length=253,
        help_text="Route53: the hosted zone id (empty: looked up by name). RFC 2136: the "
        "zone on the server, when this zone is a subdomain of it.",
        widget=forms.TextInput(attrs=_plain()),
    )
    default_ttl = forms.IntegerField(
        label="Record TTL (seconds)", initial=300, min_value=30, max_value=86400
    )
    wildcard = forms.BooleanField(
        label="One wildcard certificate for the zone (DNS-01)",
        required=False,
        help_text=DnsZone._meta.get_field("wildcard").help_text,
    )

    def __init__(self, *args: Any, accounts: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        cast(forms.ModelChoiceField, self.fields["account"]).queryset = accounts
