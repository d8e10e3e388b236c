"""Forms of the host pages: enrol a host, confirm its key. The services re-check everything."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from provisioning import validators as v
from provisioning.models import Host


def _no_control_characters(value: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError("Control characters (newlines, tabs, ...) are refused.")


class HostEnrolForm(forms.Form):
    """A new host: where it is, as whom the panel logs in, and how its key is confirmed."""

    name = forms.CharField(
        max_length=40, validators=[v.validate_slug], help_text="Short name, e.g. app-fra-1."
    )
    role = forms.ChoiceField(choices=Host.Role.choices)
    address = forms.CharField(
        max_length=253,
        validators=[v.validate_host_address],
        help_text="IP address or DNS name the panel connects to.",
    )
    ssh_port = forms.IntegerField(label="SSH port", initial=22, min_value=1, max_value=65535)
    ssh_user = forms.CharField(
        label="SSH user", max_length=32, initial="root", validators=[v.validate_ssh_user]
    )
    data_root = forms.CharField(
        max_length=200,
        initial="/srv/atlassian",
        validators=[v.validate_abs_path],
        help_text="Where instances, proxy and backups live on the host.",
    )
    private_address = forms.CharField(
        max_length=253,
        required=False,
        validators=[v.validate_host_address],
        help_text="How other managed hosts reach this one (defaults to the address).",
    )
    peer_ssh_port = forms.IntegerField(
        label="SSH port at the private address",
        required=False,
        min_value=1,
        max_value=65535,
        help_text="Only if it differs from the SSH port above.",
    )
    backup_host = forms.ModelChoiceField(
        queryset=Host.objects.none(),
        required=False,
        empty_label="No backup host",
        help_text="App hosts push their backups here.",
    )
    host_key_fingerprint = forms.CharField(
        label="Host key fingerprint",
        max_length=60,
        required=False,
        validators=[v.validate_fingerprint],
        help_text="Optional: SHA256:… from `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`. "
        "Without it you confirm the fingerprint the panel sees on first contact.",
    )
    root_password = forms.CharField(
        label="One-time password",
        max_length=200,
        required=False,
        strip=False,
        validators=[_no_control_characters],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Optional: lets the panel install its key itself. Used once, never stored.",
    )

    def __init__(self, *args: Any, backup_hosts: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["backup_host"].queryset = backup_hosts
        for name in ("name", "address", "data_root", "private_address", "host_key_fingerprint"):
            self.fields[name].widget.attrs.update(autocomplete="off", spellcheck="false")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if Host.objects.filter(name=name).exists():
            raise ValidationError(f"A host named {name} exists already.")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("backup_host") is not None and data.get("role") != Host.Role.APP:
            self.add_error("backup_host", "Only app hosts have a backup host.")
        return data


class HostTrustForm(forms.Form):
    """The admin types (or pastes) the fingerprint they compared with the host's own."""

    fingerprint = forms.CharField(
        max_length=60,
        validators=[v.validate_fingerprint],
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    root_password = forms.CharField(
        label="One-time password",
        max_length=200,
        required=False,
        strip=False,
        validators=[_no_control_characters],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Optional: lets the panel install its key itself. Used once, never stored.",
    )
