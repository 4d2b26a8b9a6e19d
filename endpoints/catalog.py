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
ENGINE_DEFAULT_PORT = {"tgi": 80, "tei": 80, "vLLM": 8000, "sGLang": 30000, "llamacpp": 8080, "hfServe": 80}
