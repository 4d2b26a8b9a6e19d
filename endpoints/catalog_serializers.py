"""Shapes of the inference catalog API: the list query and answer, and the deploy bodies, as the
``huggingface_hub`` client sends and parses them (``list_inference_catalog``,
``create_inference_endpoint_from_catalog``). Unknown keys are ignored, as elsewhere in the API."""

from rest_framework import serializers

from controlplane.fields import StrictCharField
from controlplane.names import ENDPOINT_NAME_PATTERN
from controlplane.validators import FullMatchValidator
from quotas.models import Accelerator

from .catalog import catalog_item
from .catalog_models import Engine
from .serializers import EndpointSerializer


class CatalogListQuerySerializer(serializers.Serializer):
    accelerator = serializers.ChoiceField(choices=Accelerator.values, required=False,
                                          help_text="Only models with a recipe on this accelerator, and only those recipes")
    engine = serializers.ChoiceField(choices=Engine.values, required=False,
                                     help_text="Only models with a recipe running this engine, and only those recipes")
    license = StrictCharField(max_length=64, required=False, help_text="Only models under this license (any case)")
    task = StrictCharField(max_length=64, required=False, help_text="Only models for this task")
    search = StrictCharField(max_length=256, required=False, help_text="Only models whose repository id contains this")
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, help_text="At most this many models")


# ---------------------------------------------------------------- list (documents the response shape)
class CatalogProviderSerializer(serializers.Serializer):
    vendor = serializers.CharField()
    region = serializers.CharField()


class CatalogComputeSerializer(serializers.Serializer):
    id = serializers.CharField()
    instanceType = serializers.CharField()
    instanceSize = serializers.CharField()


class CatalogRecipeSerializer(serializers.Serializer):
    publicId = serializers.CharField(help_text="Deploy it with POST /api/v1/catalog/recipe/{publicId}/deploy")
    accelerator = serializers.ChoiceField(choices=Accelerator.values)
    engineType = serializers.ChoiceField(choices=Engine.values)
    ggufFile = serializers.CharField(allow_null=True, help_text="The GGUF file a llama.cpp recipe serves")
    revision = serializers.CharField(allow_null=True, help_text="The revision the recipe pins (null: the default)")
    provider = CatalogProviderSerializer()
    compute = CatalogComputeSerializer()


class CatalogModelSerializer(serializers.Serializer):
    """A catalog model and its recipes; ``endpoints.catalog.catalog_item`` builds it."""

    repoId = serializers.CharField()
    modelName = serializers.CharField()
    authorName = serializers.CharField(allow_blank=True)
    license = serializers.CharField()
    task = serializers.CharField()
    createdAt = serializers.CharField(help_text="When the model was added to the catalog")
    recipes = CatalogRecipeSerializer(many=True)

    def to_representation(self, instance) -> dict:
        return catalog_item(instance)


class CatalogListSerializer(serializers.Serializer):
    items = CatalogModelSerializer(many=True)


# ---------------------------------------------------------------- deploy
class CatalogDeployConfigSerializer(serializers.Serializer):
    name = StrictCharField(max_length=32, required=False, allow_null=True, default=None, validators=[
        FullMatchValidator(ENDPOINT_NAME_PATTERN,
                           "Lowercase letters, digits and '-', starting and ending with a letter or digit.")],
        help_text="The new endpoint's name; a fresh one derived from the model's name when absent")


class CatalogNamespaceSerializer(serializers.Serializer):
    """Only the namespace: read first, so the caller's access is checked before the rest of the body."""

    namespace = StrictCharField(max_length=64, help_text="The account the endpoint is created in")


class CatalogRecipeDeploySerializer(CatalogNamespaceSerializer):
    config = CatalogDeployConfigSerializer(required=False, allow_null=True, default=None)

    def to_internal_value(self, data):
        attrs = super().to_internal_value(data)
        # A recipe already fixes the accelerator and the file: refuse rather than silently ignore them.
        refused = {field: ["Not valid with a recipe, which already fixes it; deploy the model to choose."]
                   for field in ("accelerator", "ggufFile") if data.get(field) is not None}
        if refused:
            raise serializers.ValidationError(refused)
        return attrs


class CatalogModelDeploySerializer(CatalogNamespaceSerializer):
    config = CatalogDeployConfigSerializer(required=False, allow_null=True, default=None)
    accelerator = serializers.ChoiceField(choices=Accelerator.values, required=False, allow_null=True, default=None,
                                          help_text="Deploy the model's first recipe on this accelerator")
    ggufFile = StrictCharField(max_length=256, required=False, allow_null=True, default=None,
                               help_text="Deploy the model's first recipe serving this GGUF file")


class CatalogDeployedSerializer(serializers.Serializer):
    endpoint = EndpointSerializer()
