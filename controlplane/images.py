"""What an endpoint can run: the managed image's tasks and their libraries, the frameworks, the image
variants and their engines' ports, health routes and options, and the device variables no container may be
given. Pure: the serializers, the renderer and the gateway's route records all read it."""

# Tasks the managed Hugging Face inference image can serve, with the library that serves each.
MANAGED_TASKS: dict[str, str] = {
    "text-classification": "transformers",
    "zero-shot-classification": "transformers",
    "token-classification": "transformers",
    "question-answering": "transformers",
    "fill-mask": "transformers",
    "summarization": "transformers",
    "translation": "transformers",
    "text2text-generation": "transformers",
    "text-generation": "transformers",
    "feature-extraction": "transformers",
    "sentence-embeddings": "sentence-transformers",
    "sentence-similarity": "sentence-transformers",
    "sentence-ranking": "sentence-transformers",
    "image-classification": "transformers",
    "automatic-speech-recognition": "transformers",
    "audio-classification": "transformers",
    "object-detection": "transformers",
    "image-segmentation": "transformers",
    "table-question-answering": "transformers",
    "conversational": "transformers",
    "text-to-image": "diffusers",
    "custom": "custom",
}

FRAMEWORKS = ("pytorch", "tensorflow", "custom")

# Managed variants run our image and take no URL; container variants name their own image.
MANAGED_VARIANTS = ("huggingface", "huggingfaceNeuron")
CONTAINER_VARIANTS = ("custom", "hfServe", "llamacpp", "sGLang", "tei", "tgi", "tgiNeuron", "vLLM", "vLLMNeuron")
IMAGE_VARIANTS = MANAGED_VARIANTS + CONTAINER_VARIANTS

# The health route and port each container engine listens on when the variant does not say.
DEFAULT_HEALTH_ROUTE = "/health"
DEFAULT_PORT = 80
ENGINE_DEFAULT_PORT = {"vLLM": 8000, "sGLang": 30000, "llamacpp": 8080}

# Engine options (``model.image.<variant>.<option>``) reach the container as environment variables.
ENGINE_ENV_PREFIX = {"llamacpp": "LLAMA_ARG_"}

# Environment variables that choose which devices a container sees. The GPU runtime reads them from the
# container's environment, so a tenant setting one could reach GPUs its quota never admitted: refused in
# model.env, model.secrets, the variant's env and (after conversion) engine options. Matched by prefix,
# case-insensitively.
DEVICE_ENV_DENYLIST = ("NVIDIA_", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_MPS_", "HIP_VISIBLE_DEVICES",
                       "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "NEURON_RT_VISIBLE_CORES",
                       "NEURON_RT_NUM_CORES", "HABANA_VISIBLE_", "TPU_VISIBLE_CHIPS")

# The extended resource each accelerator's devices are requested as (CPU computes request none).
DEVICE_RESOURCE = {"gpu": "nvidia.com/gpu", "neuron": "aws.amazon.com/neuron"}

DOCKER_HUB = "https://index.docker.io/v1/"


def image_registry(image_url: str) -> str:
    """The registry an image reference pulls from, as a docker config names it: ``ghcr.io/x/y:1`` ->
    ``ghcr.io``, ``localhost:5000/y`` -> ``localhost:5000``, ``team/y`` or ``y`` -> Docker Hub."""
    first = image_url.split("/", 1)[0]
    return first if "/" in image_url and ("." in first or ":" in first or first == "localhost") else DOCKER_HUB


def engine_env_name(variant: str, option: str) -> str:
    """``maxInputLength`` -> ``MAX_INPUT_LENGTH`` (TGI, TEI, vLLM read these); llama.cpp's get ``LLAMA_ARG_``."""
    snake = "".join(f"_{c}" if c.isupper() else c for c in option).upper().lstrip("_")
    return ENGINE_ENV_PREFIX.get(variant, "") + snake


def device_env(name: str) -> bool:
    """``name`` is a device-selection variable (``DEVICE_ENV_DENYLIST``) a tenant may not set."""
    return name.upper().startswith(DEVICE_ENV_DENYLIST)


def image_health_route(image: dict) -> str:
    """The health route of a one-key ``model.image``: the managed image's, or the variant's own."""
    (variant, body), = image.items()
    if variant in MANAGED_VARIANTS:
        return DEFAULT_HEALTH_ROUTE
    return (body or {}).get("healthRoute") or DEFAULT_HEALTH_ROUTE


def image_port(image: dict) -> int:
    """The port the serving container listens on: 80 for the managed image, else the variant's or its engine's."""
    (variant, body), = image.items()
    if variant in MANAGED_VARIANTS:
        return DEFAULT_PORT
    return (body or {}).get("port") or ENGINE_DEFAULT_PORT.get(variant, DEFAULT_PORT)
