"""The inference catalog: what it lists, the create body a recipe stands for, and deploying one.

- ``catalog_list(...)`` reads the listed models, each with its listed recipes, in two queries whatever the
  number of models and recipes.
- ``recipe_spec(recipe, name=...)`` is the Endpoints v2 create body of a recipe.
- ``catalog_model_recipe`` / ``catalog_recipe_get`` pick the recipe a deploy names (by model, narrowed by
  accelerator and GGUF file, or by recipe id).
- ``catalog_deploy`` creates the endpoint through ``endpoints.services.endpoint_create``, so a catalog
  deploy is admitted against the account's quota, checked and audited exactly like any create.

A recipe is listed, and deployable, while it and its model are enabled and its instance can be ordered.
"""

import re
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.db.models.functions import Collate, Lower

from controlplane.errorcodes import Code
from controlplane.errors import Conflict, InvalidSpec, NotFound, flatten_errors
from controlplane.models import Account
from controlplane.services import audit_record
from controlplane.wire import iso_z
from quotas.models import InstanceType

from .catalog_models import CatalogModel, CatalogRecipe, Engine, engine_variant
from .models import Endpoint
from .serializers import EndpointSpecSerializer
from .services import endpoint_create

# Where the model fetcher puts the repository in every endpoint's pod (``deployments.render.REPOSITORY_DIR``;
# this app sits below ``deployments`` and cannot import it, a test keeps the two equal).
MODEL_DIR = "/repository"
# Catalog recipes run engine containers, for which the framework is only a label passed to the container.
FRAMEWORK = "pytorch"
UNORDERABLE = (InstanceType.Status.DEPRECATED, InstanceType.Status.NOT_AVAILABLE)


class CatalogNotFound(NotFound):
    code = Code.CATALOG_NOT_FOUND
    message = "Not in the catalog"


class NoMatchingRecipe(InvalidSpec):
    code = Code.NO_MATCHING_RECIPE
    message = "No recipe of the model matches"


# ---------------------------------------------------------------- reads
def _listed_recipes() -> QuerySet[CatalogRecipe]:
    return CatalogRecipe.objects.filter(enabled=True).exclude(instance__status__in=UNORDERABLE)


def catalog_list(*, accelerator: str | None = None, engine: str | None = None, license: str | None = None,
                 task: str | None = None, search: str | None = None, limit: int | None = None) -> list[CatalogModel]:
    """The listed models, by repository id ignoring case, each with ``listed_recipes``: its listed recipes (by position).

    ``accelerator`` and ``engine`` keep the models that have a recipe for them and only those recipes (the
    CLI shows one row per recipe); ``license`` matches case-insensitively, ``task`` exactly, ``search`` any
    part of the repository id; ``limit`` caps the number of models. Two queries.
    """
    recipes = _listed_recipes()
    if accelerator:
        recipes = recipes.filter(instance__accelerator=accelerator)
    if engine:
        recipes = recipes.filter(engine=engine)
    models = CatalogModel.objects.filter(enabled=True).filter(Exists(recipes.filter(model=OuterRef("pk"))))
    if license:
        models = models.filter(license__iexact=license)
    if task:
        models = models.filter(task=task)
    if search:
        models = models.filter(repo_id__icontains=search)
    # The byte order of the lower-cased id: the same on every database, whatever its collation.
    models = models.order_by(Collate(Lower("repo_id"), "C")).prefetch_related(Prefetch("recipes", to_attr="listed_recipes",
                                              queryset=recipes.select_related("instance").order_by("position", "pk")))
    return list(models[:limit] if limit else models)


def recipe_item(recipe: CatalogRecipe) -> dict:
    """A recipe as the list shows it: the keys ``huggingface_hub``'s ``InferenceCatalogRecipe`` reads, and
    where it runs."""
    instance = recipe.instance
    return {
        "publicId": recipe.public_id,
        "accelerator": instance.accelerator,
        "engineType": recipe.engine,
        "ggufFile": recipe.gguf_file or None,
        "revision": recipe.revision or None,
        "provider": {"vendor": instance.vendor, "region": instance.region},
        "compute": {"id": instance.compute_id, "instanceType": instance.instance_type,
                    "instanceSize": instance.instance_size},
    }


def catalog_item(model: CatalogModel) -> dict:
    """A model as the list shows it (``InferenceCatalogModel``'s keys), with the recipes ``catalog_list`` kept."""
    return {
        "repoId": model.repo_id,
        "modelName": model.model_name,
        "authorName": model.author_name,
        "license": model.license,
        "task": model.task,
        "createdAt": iso_z(model.created_at),
        "recipes": [recipe_item(recipe) for recipe in model.listed_recipes],
    }


def catalog_recipe_get(*, public_id: str) -> CatalogRecipe:
    """The listed recipe ``public_id``, with its model and instance, or CatalogNotFound (404)."""
    recipe = (_listed_recipes().filter(public_id=public_id, model__enabled=True)
              .select_related("instance", "model").first())
    if recipe is None:
        raise CatalogNotFound(f"No recipe '{public_id}' in the catalog")
    return recipe


def catalog_model_recipe(*, repo_id: str, accelerator: str | None = None,
                         gguf_file: str | None = None) -> CatalogRecipe:
    """The recipe a deploy of model ``repo_id`` gets: its first listed recipe (by position) for ``accelerator``
    and ``gguf_file`` when given.

    Raises CatalogNotFound (404) when the model is not listed, NoMatchingRecipe (400, naming ``accelerator``
    or ``ggufFile`` and saying what the model has) when none of its recipes matches.
    """
    candidates = list(_listed_recipes().filter(model__repo_id=repo_id, model__enabled=True)
                      .select_related("instance", "model").order_by("position", "pk"))
    if not candidates:
        raise CatalogNotFound(f"No model '{repo_id}' in the catalog")
    for field, wanted, value_of in (("accelerator", accelerator, lambda r: r.instance.accelerator),
                                    ("ggufFile", gguf_file, lambda r: r.gguf_file)):
        if wanted is None:
            continue
        matching = [recipe for recipe in candidates if value_of(recipe) == wanted]
        if not matching:
            offered = sorted({value_of(recipe) for recipe in candidates if value_of(recipe)})
            message = (f"'{repo_id}' has no recipe with {field} '{wanted}'"
                       + (f"; it has: {', '.join(offered)}" if offered else f"; it has none with a {field}"))
            raise NoMatchingRecipe(message, fields={field: [message]})
        candidates = matching
    return candidates[0]


# ---------------------------------------------------------------- the create body of a recipe
def recipe_spec(recipe: CatalogRecipe, *, name: str) -> dict:
    """The v2 create body that deploys ``recipe`` as the endpoint ``name`` (type: the create default)."""
    instance, model = recipe.instance, recipe.model
    options = dict(recipe.engine_options or {})
    if recipe.gguf_file:
        # llama.cpp's server reads the model path from LLAMA_ARG_MODEL, which this option becomes.
        options["model"] = f"{MODEL_DIR}/{recipe.gguf_file}"
    return {
        "name": name,
        "provider": {"vendor": instance.vendor, "region": instance.region},
        "compute": {
            "accelerator": instance.accelerator,
            "instanceType": instance.instance_type,
            "instanceSize": instance.instance_size,
            "scaling": {"minReplica": recipe.min_replica, "maxReplica": recipe.max_replica,
                        "scaleToZeroTimeout": recipe.scale_to_zero_timeout},
        },
        "model": {
            "repository": model.repo_id,
            "revision": recipe.revision or None,
            "framework": FRAMEWORK,
            "task": model.task,
            "image": {engine_variant(recipe.engine, instance.accelerator): {**options, "url": recipe.image_url}},
            "env": dict(recipe.env or {}),
            "args": list(recipe.args) if recipe.args is not None else None,
        },
    }


# Where a create-body field comes from in a recipe, to name the recipe's field when the body is refused.
_SPEC_SOURCE = (("model.image", "engine_options"), ("model.env", "env"), ("model.args", "args"),
                ("model.revision", "revision"), ("model.task", "__all__"), ("model.repository", "__all__"),
                ("compute.scaling.maxReplica", "max_replica"), ("compute.scaling.minReplica", "min_replica"),
                ("compute.scaling.scaleToZeroTimeout", "scale_to_zero_timeout"))


def recipe_spec_errors(recipe: CatalogRecipe) -> dict[str, list[str]]:
    """Why the create body of ``recipe`` would be refused, keyed by the recipe's fields; empty when it passes
    (the instance, quota and name are checked at deploy time)."""
    if not isinstance(recipe.engine_options, dict) or any(
            isinstance(v, (dict, list)) for v in recipe.engine_options.values()):
        return {"engine_options": ["An object of scalar options, e.g. {\"ctxSize\": 8192}."]}
    if "model" in recipe.engine_options and recipe.engine == Engine.LLAMACPP:
        return {"engine_options": ["The model option is set from the GGUF file."]}
    if not isinstance(recipe.env, dict):
        return {"env": ["An object of environment variables."]}
    if recipe.args is not None and not isinstance(recipe.args, list):
        return {"args": ["A list of strings."]}
    spec = EndpointSpecSerializer(data=recipe_spec(recipe, name="catalog-check"))
    if spec.is_valid():
        return {}
    errors: dict[str, list[str]] = {}
    for path, messages in flatten_errors(spec.errors).items():
        source = next((field for prefix, field in _SPEC_SOURCE if path.startswith(prefix)), "__all__")
        if path.startswith("model.image") and path.endswith(".url"):
            source = "image_url"
        errors.setdefault(source, []).extend(f"{path}: {message}" for message in messages)
    return errors


def endpoint_name_for(model: CatalogModel) -> str:
    """A fresh endpoint name for ``model``: its name as a DNS label, cut to fit, and five random characters."""
    base = re.sub(r"[^a-z0-9]+", "-", model.model_name.lower()).strip("-")[:26].rstrip("-") or "model"
    return f"{base}-{''.join(secrets.choice('abcdefghijklmnopqrstuvwxyz0123456789') for _ in range(5))}"


# ---------------------------------------------------------------- deploy
@transaction.atomic
def catalog_deploy(*, account: Account, recipe: CatalogRecipe, name: str | None,
                   actor: AbstractBaseUser | None) -> Endpoint:
    """Create the endpoint ``recipe`` describes in ``account``, named ``name`` (a fresh name when None).

    ``endpoint_create`` does the work: it admits the recipe's instance against the account's quota
    (QuotaExceeded, 403), refuses a taken name (Conflict, 409, the field named ``config.name`` as the
    catalog body calls it) and records the create event; the account's audit log also records which
    recipe was deployed. One transaction: nothing is written on error.
    """
    spec = recipe_spec(recipe, name=name or endpoint_name_for(recipe.model))
    try:
        endpoint = endpoint_create(account=account, spec=spec, actor=actor)
    except Conflict as exc:
        exc.fields = {("config.name" if field == "name" else field): messages for field, messages in exc.fields.items()}
        raise
    audit_record(actor=actor, action="catalog.deploy", account=account, target=endpoint.name,
                 diff={"recipe": [None, recipe.public_id], "model.repository": [None, recipe.model.repo_id]})
    return endpoint


def model_catalog_seed() -> int:
    """Load the seed catalog (``endpoints.catalog_seed``) into an empty catalog, as the data migration does
    on a fresh database (and tests after a flush); returns the recipes added."""
    from .catalog_seed import seed

    if CatalogModel.objects.exists():
        return 0
    return seed(CatalogModel, CatalogRecipe, InstanceType)
