"""Seed the instance catalog with the public price table (quotas/seed.py)."""

from django.db import migrations


def seed(apps, schema_editor):
    from quotas.seed import rows

    InstanceType = apps.get_model("quotas", "InstanceType")
    for row in rows():
        key = {k: row[k] for k in ("vendor", "region", "accelerator", "instance_type", "instance_size")}
        InstanceType.objects.update_or_create(**key, defaults=row)


class Migration(migrations.Migration):
    dependencies = [("quotas", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
