"""Re-encrypt every secret under the first key of PANEL_ENCRYPTION_KEYS (key rotation).

Works on the stored ciphertext directly, so clear text is never materialised in bulk.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import connection, transaction

from panel.crypto import PREFIX, EncryptedJSONField, EncryptedTextField, rotate


class Command(BaseCommand):
    help = "Re-encrypt all encrypted fields with the current primary key; then drop old keys."

    def handle(self, *args: object, **options: object) -> None:
        quote = connection.ops.quote_name
        rows_changed = 0
        for model in apps.get_models():
            fields = [
                f
                for f in model._meta.concrete_fields
                if isinstance(f, EncryptedTextField | EncryptedJSONField)
            ]
            if not fields:
                continue
            table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
            cols = [quote(f.column) for f in fields]
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(f"SELECT {pk}, {', '.join(cols)} FROM {table}")  # noqa: S608
                for row_pk, *stored in cur.fetchall():
                    updates = {
                        c: rotate(v)
                        for c, v in zip(cols, stored, strict=True)
                        if v and v.startswith(PREFIX)
                    }
                    if not updates:
                        continue
                    sets = ", ".join(f"{c} = %s" for c in updates)
                    with connection.cursor() as upd:
                        upd.execute(
                            f"UPDATE {table} SET {sets} WHERE {pk} = %s",  # noqa: S608
                            [*updates.values(), row_pk],
                        )
                    rows_changed += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted secrets in {rows_changed} rows."))
