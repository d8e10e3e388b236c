"""Forms of the backup pages: an extra backup, a restore (staff), a restore request
(customers), a policy (staff) and the handling of a request. The services re-check."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from backups.models import Backup, BackupMode, BackupPolicy, RestoreMode, RestoreRequest
from backups.selectors import RestoreTarget
from provisioning import validators as v
from provisioning.models import Host


class BackupStartForm(forms.Form):
    """An extra backup now; the mode defaults to the policy's."""

    mode = forms.ChoiceField(
        choices=[("", "As in the policy")] + list(BackupMode.choices), required=False
    )


class _PointChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Backup) -> str:
        label = f" {obj.label}" if obj.label else ""
        return f"{obj.taken_at:%Y-%m-%d %H:%M} UTC{label} ({obj.get_kind_display().lower()})"


class _TargetChoice(forms.ModelChoiceField):
    """App hosts by name with their free capacity (``labels``, from the selector)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels: dict[Any, str] = {}

    def label_from_instance(self, obj: Host) -> str:
        return self.labels.get(obj.pk, obj.name)


class RestoreForm(forms.Form):
    """Staff restore a retained point in place (typing the name) or into a new instance."""

    backup = _PointChoice(queryset=Backup.objects.none(), empty_label=None, label="Point")
    mode = forms.ChoiceField(
        choices=RestoreMode.choices, widget=forms.RadioSelect, initial=RestoreMode.IN_PLACE
    )
    confirm_name = forms.CharField(
        required=False,
        label="Type the instance's name to confirm an in-place restore",
        help_text="Everything changed since the point is replaced (a safety backup is taken "
        "first).",
    )
    skip_safety = forms.BooleanField(
        required=False,
        label="Skip the safety backup",
        help_text="Only when the current state cannot be backed up (e.g. its database is "
        "broken): if the restore then fails, only the previous database can be put back.",
    )
    name = forms.CharField(
        required=False, max_length=40, validators=[v.validate_slug], label="New instance name"
    )
    hostname = forms.CharField(
        required=False, max_length=253, validators=[v.validate_fqdn], label="New instance hostname"
    )
    host = _TargetChoice(
        queryset=Host.objects.none(),
        required=False,
        label="App host of the copy",
        empty_label="The source's host (if it has room)",
        help_text="Ready app hosts that read the point's backup host and have the memory and "
        "disk the copy needs, with what they have free.",
        error_messages={
            "invalid_choice": "Choose one of the listed app hosts: only those are ready, read "
            "the point's backup host and have room for the copy."
        },
    )

    def __init__(
        self, *args: Any, points: QuerySet, targets: list[RestoreTarget], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["backup"].queryset = points
        host_field = self.fields["host"]
        assert isinstance(host_field, _TargetChoice)
        host_field.labels = {t.host.pk: t.label for t in targets}
        host_field.queryset = Host.objects.filter(pk__in=list(host_field.labels)).order_by("name")


class RestoreRequestForm(forms.Form):
    """A customer asks support to restore a point."""

    backup = _PointChoice(
        queryset=Backup.objects.none(),
        required=False,
        label="Point",
        empty_label="Not sure / tell me which",
    )
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=2000,
        label="What should come back, and why?",
    )

    def __init__(self, *args: Any, points: QuerySet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["backup"].queryset = points


class _BackupHostSelect(forms.Select):
    """The backup host choice. Read-only (a customer's view of the policy), it offers no host
    names at all: customers never learn which backup hosts the platform has."""

    READ_ONLY_LABEL = "Chosen by support"

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict[str, Any]:
        if attrs and attrs.get("disabled"):
            # BoundField marks a disabled field's widget at render time; only then is the list
            # replaced by one neutral option.
            neutral = forms.Select(attrs=self.attrs, choices=[("", self.READ_ONLY_LABEL)])
            return neutral.get_context(name, "", attrs)
        return super().get_context(name, value, attrs)


class PolicyForm(forms.ModelForm):
    """Staff change an instance's backup policy (others see it read-only, without hosts)."""

    class Meta:
        model = BackupPolicy
        fields = [
            "enabled",
            "interval_minutes",
            "window_start",
            "jitter_minutes",
            "mode",
            "keep_hourly",
            "keep_daily",
            "keep_weekly",
            "keep_monthly",
            "backup_host",
            "offsite_enabled",
        ]
        widgets = {
            "window_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "backup_host": _BackupHostSelect,
        }


class RequestHandleForm(forms.Form):
    status = forms.ChoiceField(
        choices=[(RestoreRequest.Status.DONE, "Done"), (RestoreRequest.Status.DECLINED, "Declined")]
    )
    response = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
