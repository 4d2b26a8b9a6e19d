"""Seed the inference catalog (endpoints/catalog_seed.py) on recipes of the seeded instance table."""

from django.db import migrations


def seed(apps, schema_editor):
    from endpoints.catalog_seed import seed as seed_catalog

    seed_catalog(apps.get_model("endpoints", "CatalogModel"), apps.get_model("endpoints", "CatalogRecipe"),
                 apps.get_model("quotas", "InstanceType"))


class Migration(migrations.Migration):
    dependencies = [("endpoints", "0002_catalog"), ("quotas", "0002_seed_catalog")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
