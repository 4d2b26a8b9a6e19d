"""The inference catalog API at ``/api/v1/catalog``, as ``huggingface_hub``'s ``list_inference_catalog`` and
``create_inference_endpoint_from_catalog`` (``hf endpoints catalog ls | deploy``) call it.

The list is the same for every authenticated caller (read tokens included). A deploy authenticates and
authorises exactly like ``POST /v2/endpoint/{namespace}``: the ``namespace`` of the body must be one the
caller (user and token) can write, then the recipe is created through the endpoint create service.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.models import Role
from controlplane.views import body_error_responses, caller_account, error_responses

from . import catalog
from .catalog_serializers import (
    CatalogDeployedSerializer,
    CatalogListQuerySerializer,
    CatalogListSerializer,
    CatalogModelDeploySerializer,
    CatalogNamespaceSerializer,
    CatalogRecipeDeploySerializer,
)
from .serializers import EndpointSerializer


class CatalogListView(APIView):
    @extend_schema(operation_id="catalog_list", tags=["catalog"], parameters=[CatalogListQuerySerializer],
                   description="The catalog's models, each with its recipes (tested ways of deploying it).",
                   responses={200: CatalogListSerializer, **error_responses()})
    def get(self, request: Request) -> Response:
        query = CatalogListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(CatalogListSerializer({"items": catalog.catalog_list(**query.validated_data)}).data)


def _deploy(request: Request, serializer_class, pick) -> Response:
    """Check the caller may write the body's namespace (404 not theirs, 403 too low a role or a read token),
    then the rest of the body (400 naming the field), pick the recipe (404 unknown, 400 no match) and deploy it."""
    namespace = CatalogNamespaceSerializer(data=request.data)
    namespace.is_valid(raise_exception=True)
    account = caller_account(request, namespace.validated_data["namespace"], Role.WRITE)
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    recipe = pick(body.validated_data)
    endpoint = catalog.catalog_deploy(account=account, recipe=recipe, actor=request.user,
                                      name=(body.validated_data["config"] or {}).get("name"))
    return Response({"endpoint": EndpointSerializer(endpoint).data}, status=202)


DEPLOY_RESPONSES = {202: CatalogDeployedSerializer, **body_error_responses(403, 404, 409)}


class CatalogModelDeployView(APIView):
    @extend_schema(operation_id="catalog_model_deploy", tags=["catalog"], request=CatalogModelDeploySerializer,
                   parameters=[OpenApiParameter("repo_id", str, OpenApiParameter.PATH,
                                                description="The model's Hub repository id, e.g. Qwen/Qwen2.5-7B-Instruct")],
                   description="Deploy the model's first recipe (narrowed by accelerator and ggufFile when given).",
                   responses=DEPLOY_RESPONSES)
    def post(self, request: Request, repo_id: str) -> Response:
        return _deploy(request, CatalogModelDeploySerializer, lambda body: catalog.catalog_model_recipe(
            repo_id=repo_id, accelerator=body["accelerator"], gguf_file=body["ggufFile"]))


class CatalogRecipeDeployView(APIView):
    @extend_schema(operation_id="catalog_recipe_deploy", tags=["catalog"], request=CatalogRecipeDeploySerializer,
                   description="Deploy one recipe, as listed by its publicId.", responses=DEPLOY_RESPONSES)
    def post(self, request: Request, recipe_id: str) -> Response:
        return _deploy(request, CatalogRecipeDeploySerializer,
                       lambda body: catalog.catalog_recipe_get(public_id=recipe_id))
