"""Forms of the backup pages: an extra backup, a restore of a point or to a time (staff), a
restore request (customers), a policy (staff) and the handling of a request. The services
re-check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime

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


class UtcDateTimeField(forms.DateTimeField):
    """A moment to the second, typed in a ``datetime-local`` picker and read as UTC whatever
    the server's time zone (with an explicit offset, converted to UTC)."""

    input_formats = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
    widget = forms.DateTimeInput(
        attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"
    )

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        moment: datetime | None
        if isinstance(value, datetime):
            moment = value
        else:
            text = str(value).strip()
            moment = next(
                (m for m in (self._strptime(text, f) for f in self.input_formats) if m), None
            )
            if moment is None:
                try:
                    moment = parse_datetime(text)  # ISO 8601, with a zone if one is given
                except ValueError:  # well formed but impossible (e.g. 25 o'clock)
                    moment = None
            if moment is None:
                raise ValidationError(
                    "Enter a date and time to the second, e.g. 2025-03-01T14:30:05 (UTC).",
                    code="invalid",
                )
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # an offset that pushes the year out of range
            raise ValidationError("That time is out of range.", code="invalid") from None

    @staticmethod
    def _strptime(text: str, fmt: str) -> datetime | None:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            return None


class RestoreToTimeForm(forms.Form):
    """Staff restore an instance to a second inside its recoverable window: in place, typing
    its name to confirm, or into a new instance with its own name and hostname (the service
    checks the window, the name, the host's room and the instance's state)."""

    target_time = UtcDateTimeField(
        label="Restore to (UTC)",
        help_text="Read as UTC, to the second; it must lie inside the recoverable window.",
    )
    mode = forms.ChoiceField(
        choices=[
            (RestoreMode.IN_PLACE, "In place (replaces the instance's current state)"),
            (RestoreMode.NEW_INSTANCE, "Into a new instance next to it (the source keeps running)"),
        ],
        widget=forms.RadioSelect,
        initial=RestoreMode.IN_PLACE,
        required=False,  # in place unless a copy is asked for
        label="Where",
    )
    confirm = forms.CharField(
        max_length=200, required=False, label="In place: type the instance's name to confirm"
    )
    name = forms.CharField(
        required=False, max_length=40, validators=[v.validate_slug], label="New instance name"
    )
    hostname = forms.CharField(
        required=False, max_length=253, validators=[v.validate_fqdn], label="New instance hostname"
    )
    host: forms.ModelChoiceField[Host] = forms.ModelChoiceField(
        queryset=Host.objects.none(),
        required=False,
        label="App host of the copy",
        empty_label="The source's host (if it has room)",
        error_messages={"invalid_choice": "Choose one of the listed app hosts."},
    )

    def __init__(
        self,
        *args: Any,
        window_start: datetime | None = None,
        hosts: QuerySet | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        host_field = self.fields["host"]
        assert isinstance(host_field, forms.ModelChoiceField)
        host_field.queryset = hosts if hosts is not None else Host.objects.none()
        if window_start is not None:
            # A hint for the picker only (the form is novalidate): the service decides.
            widget = self.fields["target_time"].widget
            widget.attrs["min"] = window_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")

    def clean_mode(self) -> str:
        return self.cleaned_data.get("mode") or RestoreMode.IN_PLACE


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


class HostEvacuateForm(forms.Form):
    """Evacuate a failed app host: its name typed to confirm (the service checks the rest)."""

    confirm_name = forms.CharField(max_length=40, label="Type the host's name to confirm")

    def __init__(self, *args: Any, host: Host, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = host

    def clean_confirm_name(self) -> str:
        value = self.cleaned_data["confirm_name"].strip()
        if value != self.host.name:
            raise ValidationError(
                f"Type the host's name, {self.host.name}, exactly to confirm the evacuation."
            )
        return value
