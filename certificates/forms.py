"""Forms of the certificates app's pages (actions carry only an idempotency key)."""

from django import forms


class ActionForm(forms.Form):
    """A button that starts an operation; the key makes a double submit start it once."""

    idempotency_key = forms.CharField(max_length=100, required=False)
