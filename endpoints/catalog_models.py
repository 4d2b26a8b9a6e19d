"""The inference catalog: models an operator curated, each with the recipes (tested ways of deploying it)
that ``hf endpoints catalog`` lists and deploys.

A recipe fixes everything a create body needs but the endpoint's name: the instance (a row of the instance
table, so vendor, region, accelerator, type and size are always ones that exist), the engine and its image,
engine options, arguments and environment, the GGUF file of a llama.cpp recipe, the model revision and
the scaling. ``endpoints.catalog.recipe_spec`` turns one into a v2 create body; deploying it goes through
``endpoints.services.endpoint_create`` like any create.

Imported by ``endpoints.models`` so Django sees these models as the app's.
"""

import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from controlplane.validators import FullMatchValidator
from quotas.models import InstanceType

REPO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"
RECIPE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{2,62}[a-z0-9]$"

# Recipe ids read like the Hub's ("sizzling-biryani-g4xsi1ac"): two words for people, eight random
# characters so ids never collide in practice and cannot be guessed from the model.
_ADJECTIVES = ("sizzling", "smoky", "crispy", "zesty", "tangy", "hearty", "spicy", "savory", "golden", "toasty",
               "mellow", "fragrant", "glazed", "roasted", "peppery", "citrusy")
_DISHES = ("biryani", "ramen", "paella", "risotto", "tagine", "gnocchi", "pho", "dumpling", "falafel", "curry",
           "tamale", "pierogi", "bibimbap", "laksa", "gumbo", "shakshuka")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_recipe_id() -> str:
    """A fresh public recipe id: ``<adjective>-<dish>-<8 random lowercase letters and digits>``."""
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_DISHES)}-{suffix}"


class Engine(models.TextChoices):
    """The inference engines a recipe runs; the values are what the client filters and shows."""

    VLLM = "vllm", "vLLM"
    SGLANG = "sglang", "SGLang"
    LLAMACPP = "llamacpp", "llama.cpp"
    TEI = "tei", "Text Embeddings Inference"


def engine_variant(engine: str, accelerator: str) -> str:
    """The ``model.image`` variant an engine deploys as: vLLM on Neuron has its own variant."""
    if engine == Engine.VLLM:
        return "vLLMNeuron" if accelerator == "neuron" else "vLLM"
    return {Engine.SGLANG: "sGLang", Engine.LLAMACPP: "llamacpp", Engine.TEI: "tei"}[Engine(engine)]


class CatalogModel(models.Model):
    """A Hub repository in the catalog. Listed (and deployable) while enabled and one of its recipes is."""

    repo_id = models.CharField(max_length=256, unique=True, validators=[
        FullMatchValidator(REPO_ID_PATTERN, "A Hub repository id, e.g. meta-llama/Llama-3.1-8B-Instruct")])
    task = models.CharField(max_length=64, help_text="The task endpoints serve, e.g. text-generation")
    license = models.CharField(max_length=64, help_text="As shown to users, e.g. Apache 2.0")
    enabled = models.BooleanField(default=True, help_text="Listed and deployable")
    created_at = models.DateTimeField(default=timezone.now, help_text="When the model was added to the catalog")

    class Meta:
        ordering = ["repo_id"]
        verbose_name = "catalog model"

    def __str__(self) -> str:
        return self.repo_id

    @property
    def author_name(self) -> str:
        return self.repo_id.split("/", 1)[0] if "/" in self.repo_id else ""

    @property
    def model_name(self) -> str:
        return self.repo_id.rsplit("/", 1)[-1]


class CatalogRecipe(models.Model):
    """One tested way of deploying a catalog model. The first enabled recipe (by ``position``) that matches
    what a deploy asks for is the one deployed when the caller names the model rather than a recipe."""

    public_id = models.CharField(max_length=64, unique=True, default=new_recipe_id, validators=[
        FullMatchValidator(RECIPE_ID_PATTERN, "Lowercase letters, digits and '-' (4 to 64 characters)")],
        help_text="The id users deploy with (hf endpoints catalog deploy --recipe ...)")
    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="recipes")
    position = models.PositiveIntegerField(default=0, help_text="Lower first; the first match is the default")
    enabled = models.BooleanField(default=True)
    instance = models.ForeignKey(InstanceType, on_delete=models.PROTECT, related_name="catalog_recipes")
    engine = models.CharField(max_length=16, choices=Engine.choices)
    image_url = models.CharField(max_length=512, help_text="The engine's container image, with a tag")
    engine_options = models.JSONField(default=dict, blank=True, help_text=(
        "Engine options (scalars), e.g. {\"ctxSize\": 8192}: the container gets them as environment variables"))
    args = models.JSONField(null=True, blank=True, help_text="Container arguments (a list of strings), or empty")
    env = models.JSONField(default=dict, blank=True, help_text="Environment variables (string values)")
    gguf_file = models.CharField(max_length=256, blank=True, help_text="llama.cpp only: the file in the repository")
    revision = models.CharField(max_length=256, null=True, blank=True, help_text="Pinned revision (empty: default)")
    min_replica = models.PositiveIntegerField(default=1)
    max_replica = models.PositiveIntegerField(default=1)
    scale_to_zero_timeout = models.PositiveIntegerField(null=True, blank=True, help_text="minutes (minReplica 0)")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model__repo_id", "position", "id"]
        verbose_name = "catalog recipe"
        constraints = [
            models.CheckConstraint(condition=models.Q(min_replica__lte=models.F("max_replica")),
                                   name="catalog_recipe_replicas_ordered"),
            models.CheckConstraint(condition=models.Q(engine="llamacpp") | models.Q(gguf_file=""),
                                   name="catalog_recipe_gguf_only_llamacpp"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def accelerator(self) -> str:
        return self.instance.accelerator

    def _has_model(self) -> bool:
        try:
            return self.model is not None
        except CatalogModel.DoesNotExist:
            return False

    def clean(self) -> None:
        """What a create body built from this recipe would refuse, named by the recipe's own fields, so a
        saved recipe deploys (quota and names aside)."""
        errors: dict[str, list[str]] = {}
        if self.engine == Engine.LLAMACPP and not self.gguf_file:
            errors["gguf_file"] = ["A llama.cpp recipe names the GGUF file it serves."]
        if self.engine and self.engine != Engine.LLAMACPP and self.gguf_file:
            errors["gguf_file"] = ["Only llama.cpp recipes serve a GGUF file."]
        if self.min_replica > self.max_replica:
            errors["max_replica"] = ["Must be greater than or equal to min replica."]
        if self.instance_id is not None and not self.instance.orderable:
            errors["instance"] = [f"{self.instance.compute_id} is {self.instance.get_status_display()}."]
        if errors:
            raise ValidationError(errors)
        # An inline recipe of a model being added has the (unsaved) model object, not yet its id.
        if self.instance_id is None or self.engine not in Engine.values or not self._has_model():
            return  # the form reports the missing field itself
        from .catalog import recipe_spec_errors  # the spec rules live with the services

        if problems := recipe_spec_errors(self):
            raise ValidationError(problems)
