"""Forms of the provisioning pages: create an instance, lifecycle actions, add a license.

Forms check what a person typed and say what is wrong next to the field; the services
(``provisioning.services``) re-check and do the work.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.urls import reverse

from panel.access import Access
from panel.forms import errors_onto_form
from panel.plain_text import refuse_control_characters
from provisioning import selectors
from provisioning import validators as v
from provisioning.licenses import MAX_KEY_CHARS, license_key_check
from provisioning.models import AtlassianInstance
from provisioning.products import Product, versions_for
from provisioning.services import instance_validate_heap
from tenants.tiers import ServiceTier

PRODUCT_BLANK = [("", "Choose a product…")]


def version_choices(product: str | None) -> list[Any]:
    """Versions for ``product``; without one, every product's versions grouped by product."""
    if product in Product.values:
        return [("", "Choose a version…")] + [(ver, ver) for ver in versions_for(product)]
    return [("", "Choose a product first…")] + [
        (label, [(ver, ver) for ver in versions_for(value)]) for value, label in Product.choices
    ]


class InstanceCreateForm(forms.Form):
    """A new instance: which tenant, which product and version, where it answers, its heap."""

    tenant = forms.ModelChoiceField(queryset=None, empty_label=None)  # type: ignore[arg-type]
    name = forms.CharField(
        max_length=40,
        validators=[v.validate_instance_name],
        help_text="Short name for directories and containers, e.g. sales-jira.",
    )
    product = forms.ChoiceField(choices=PRODUCT_BLANK + list(Product.choices))
    version = forms.CharField(max_length=40, widget=forms.Select)
    hostname = forms.CharField(
        label="Hostname (FQDN)",
        max_length=253,
        validators=[v.validate_fqdn],
        help_text="The public name people use, e.g. jira.example.com.",
    )
    context_path = forms.CharField(
        max_length=64,
        required=False,
        validators=[v.validate_context_path],
        help_text=(
            "Optional single path segment such as /jira; leave empty to serve at / "
            "(Crowd: at /crowd, where its image answers)."
        ),
    )
    heap_min_mb = forms.IntegerField(label="Minimum heap (MB)", initial=1024, min_value=256)
    heap_max_mb = forms.IntegerField(label="Maximum heap (MB)", initial=2048, min_value=256)
    tier = forms.ChoiceField(
        label="Service tier",
        required=False,
        choices=[("", "The tenant's default tier")] + list(ServiceTier.choices),
    )

    def __init__(
        self, *args: Any, tenants: QuerySet, access: Access | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # Without ``access`` the form applies a customer's tier limits (the safe default).
        self.access = access
        self.fields["tenant"].queryset = tenants
        product = self.data.get("product") if self.is_bound else self.initial.get("product")
        self.fields["version"].widget.choices = version_choices(product)
        for name in ("name", "hostname", "context_path"):
            self.fields[name].widget.attrs.update(autocomplete="off", spellcheck="false")
        self.fields["hostname"].widget.attrs["inputmode"] = "url"
        # Choosing a product fetches that product's versions (htmx); without JS the version
        # list shows every product's versions, grouped, and the server checks the pair.
        self.fields["product"].widget.attrs.update(
            {
                "hx-get": reverse("provisioning:instance_create"),
                "hx-target": "#id_version",
                "hx-swap": "outerHTML",
                "hx-trigger": "change",
            }
        )

    # Names and hostnames are unique across the platform (directories, DNS), so these two checks
    # look past the caller's tenants on purpose; they say only "taken", never by whom.
    def clean_hostname(self) -> str:
        value = self.cleaned_data["hostname"].strip().lower()
        if AtlassianInstance.objects.filter(hostname=value).exists():
            raise ValidationError("Another instance already answers at this hostname.")
        # The panel's own names, reserved names and records already in a managed zone.
        v.validate_instance_hostname(value)
        return value

    def clean_name(self) -> str:
        value = self.cleaned_data["name"].strip()
        if AtlassianInstance.objects.filter(name=value).exists():
            raise ValidationError("This name is taken; instance names are unique on the platform.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tenant, tier = data.get("tenant"), data.get("tier")
        if tenant is not None and tier:
            allowed = selectors.tiers_choosable(self.access, tenant)
            if tier not in allowed:
                self.add_error("tier", selectors.tier_refusal(tier, allowed))
        product, version = data.get("product"), data.get("version")
        if product and version:
            offered = versions_for(product)
            if version not in offered:
                choices = " or ".join(
                    [", ".join(offered[:-1]), offered[-1]] if len(offered) > 1 else offered
                )
                self.add_error(
                    "version",
                    f"{version} is not an offered version of {Product(product).label}; "
                    f"choose {choices}.",
                )
        if product and data.get("heap_min_mb") and data.get("heap_max_mb"):
            try:
                instance_validate_heap(product, data["heap_min_mb"], data["heap_max_mb"])
            except ValidationError as exc:
                errors_onto_form(self, exc)
        return data


class InstanceActionForm(forms.Form):
    """The form of one lifecycle action: built for an instance, ``params()`` are the keyword
    arguments of the action's service."""

    def __init__(self, *args: Any, instance: AtlassianInstance, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance = instance

    def params(self) -> dict[str, Any]:
        return {}


class UpgradeForm(InstanceActionForm):
    """Move an instance to another offered version of its product."""

    version = forms.ChoiceField(label="New version")

    def __init__(self, *args: Any, instance: AtlassianInstance, **kwargs: Any) -> None:
        super().__init__(*args, instance=instance, **kwargs)
        self.fields["version"].choices = [
            (ver, ver) for ver in versions_for(instance.product) if ver != instance.version
        ]
        self.fields["version"].widget.attrs["id"] = "upgrade-version"

    def params(self) -> dict[str, Any]:
        return {"version": self.cleaned_data["version"]}


class ResizeForm(InstanceActionForm):
    """Change an instance's JVM heap."""

    heap_min_mb = forms.IntegerField(label="Minimum heap (MB)", min_value=1)
    heap_max_mb = forms.IntegerField(label="Maximum heap (MB)", min_value=1)

    def __init__(self, *args: Any, instance: AtlassianInstance, **kwargs: Any) -> None:
        kwargs.setdefault(
            "initial", {"heap_min_mb": instance.heap_min_mb, "heap_max_mb": instance.heap_max_mb}
        )
        super().__init__(*args, instance=instance, **kwargs)
        self.fields["heap_min_mb"].widget.attrs["id"] = "resize-heap-min"
        self.fields["heap_max_mb"].widget.attrs["id"] = "resize-heap-max"

    def params(self) -> dict[str, Any]:
        return {
            "heap_min_mb": self.cleaned_data["heap_min_mb"],
            "heap_max_mb": self.cleaned_data["heap_max_mb"],
        }


class DeleteForm(InstanceActionForm):
    """Deleting is only done by typing the instance's name."""

    confirm_name = forms.CharField(label="Type the instance name to confirm")

    def __init__(self, *args: Any, instance: AtlassianInstance, **kwargs: Any) -> None:
        super().__init__(*args, instance=instance, **kwargs)
        self.fields["confirm_name"].widget.attrs.update(
            id="delete-confirm-name", autocomplete="off", spellcheck="false"
        )

    def clean_confirm_name(self) -> str:
        value = self.cleaned_data["confirm_name"].strip()
        if value != self.instance.name:
            raise ValidationError(
                f"Type {self.instance.name} exactly to delete this instance; nothing was deleted."
            )
        return value

    def params(self) -> dict[str, Any]:
        return {"confirm": self.cleaned_data["confirm_name"]}


class NoParamsForm(InstanceActionForm):
    """Start, stop, restart and retry take no parameters."""


# One form per lifecycle service (``provisioning.services.INSTANCE_ACTIONS``): its ``params()``
# are that service's keyword arguments.
ACTION_FORMS: dict[str, type[InstanceActionForm]] = {
    "start": NoParamsForm,
    "stop": NoParamsForm,
    "restart": NoParamsForm,
    "retry": NoParamsForm,
    "upgrade": UpgradeForm,
    "resize": ResizeForm,
    "delete": DeleteForm,
}


class SecretTextarea(forms.Textarea):
    """A textarea that never echoes what was typed back into the page (like a password)."""

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict[str, Any]:
        return super().get_context(name, None, attrs)


class LicenseAddForm(forms.Form):
    """Paste a license key; facts that cannot be decoded from it may be entered by hand."""

    key = forms.CharField(
        label="License key",
        max_length=MAX_KEY_CHARS,
        widget=SecretTextarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
        help_text=(
            "Paste the key from my.atlassian.com. It is stored encrypted and never shown again."
        ),
    )
    # The facts end up in the instance's files and environment: one line each.
    sen = forms.CharField(
        label="SEN", max_length=40, required=False, validators=[refuse_control_characters]
    )
    organisation = forms.CharField(
        max_length=200, required=False, validators=[refuse_control_characters]
    )
    license_type = forms.CharField(
        label="License type",
        max_length=60,
        required=False,
        validators=[refuse_control_characters],
    )
    user_tier = forms.CharField(
        label="User tier", max_length=40, required=False, validators=[refuse_control_characters]
    )
    expiry_date = forms.DateField(
        label="Expiry date", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    maintenance_expiry_date = forms.DateField(
        label="Maintenance expiry date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    evaluation = forms.BooleanField(label="Evaluation license", required=False)

    FACT_FIELDS = (
        "sen",
        "organisation",
        "license_type",
        "user_tier",
        "expiry_date",
        "maintenance_expiry_date",
        "evaluation",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "license")
        super().__init__(*args, **kwargs)

    def clean_key(self) -> str:
        return license_key_check(self.cleaned_data["key"])

    def facts(self) -> dict[str, Any]:
        """The facts typed by hand (empty ones left out, so decoded values win)."""
        return {
            name: self.cleaned_data[name]
            for name in self.FACT_FIELDS
            if self.cleaned_data.get(name) not in (None, "", False)
        }


class InstanceFilterForm(forms.Form):
    """Search and status filter of instance lists."""

    q = forms.CharField(label="Search", required=False, max_length=100)
    status = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from provisioning.models import InstanceStatus

        self.fields["status"].choices = [("", "Any status"), ("degraded", "Degraded")] + list(
            InstanceStatus.choices
        )
        self.fields["q"].widget.attrs.update(
            placeholder="Name or hostname", type="search", autocomplete="off"
        )


class OperationFilterForm(forms.Form):
    """Status filter of the operations list."""

    status = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from provisioning.models import OperationStatus

        self.fields["status"].choices = [
            ("", "Any status"),
            ("active", "Pending or running"),
        ] + list(OperationStatus.choices)
