"""Admin for the inference catalog: models with their recipes inline, and recipes on their own (to find one
by the id a user quotes). Saving a recipe runs its checks (``CatalogRecipe.clean``): a saved recipe builds
a create body the API accepts, on an instance that can be ordered."""

from django.contrib import admin
from django.db.models import Count

from .catalog_models import CatalogModel, CatalogRecipe

RECIPE_FIELDS = ["public_id", "position", "enabled", "instance", "engine", "image_url", "gguf_file", "engine_options",
                 "args", "env", "revision", "min_replica", "max_replica", "scale_to_zero_timeout"]


class InstanceChoicesOnce:
    """The instance select lists every row of the instance table: build its choices once per request, not
    once per recipe form (each form would otherwise run the same query)."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "instance" and request is not None:
            choices = getattr(request, "_catalog_instance_choices", None)
            if choices is None:
                choices = [(str(value), label) for value, label in field.choices]
                request._catalog_instance_choices = choices
            field.choices = choices
        return field


class CatalogRecipeInline(InstanceChoicesOnce, admin.StackedInline):
    model = CatalogRecipe
    extra = 0
    fields = RECIPE_FIELDS
    ordering = ["position", "id"]


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ["repo_id", "task", "license", "enabled", "recipe_count", "created_at"]
    list_filter = ["enabled", "task", "license"]
    search_fields = ["repo_id"]
    inlines = [CatalogRecipeInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(recipe_total=Count("recipes"))

    @admin.display(description="recipes", ordering="recipe_total")
    def recipe_count(self, obj: CatalogModel) -> int:
        return obj.recipe_total


@admin.register(CatalogRecipe)
class CatalogRecipeAdmin(InstanceChoicesOnce, admin.ModelAdmin):
    list_display = ["public_id", "model", "engine", "instance", "gguf_file", "position", "enabled"]
    list_filter = ["engine", "instance__accelerator", "enabled"]
    search_fields = ["public_id", "model__repo_id", "gguf_file"]
    list_select_related = ["model", "instance"]
    fields = ["model", *RECIPE_FIELDS]
