"""What the managed image serves (tasks and their libraries), the frameworks, and the image variants."""

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

# Autoscaling thresholds when ``compute.scaling.measure`` gives none.
DEFAULT_THRESHOLD = {"hardwareUsage": 80.0, "pendingRequests": 1.5}


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
