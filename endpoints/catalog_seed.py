"""The catalog a fresh installation starts with: a few well-known models, each with recipes on instances of
the seeded instance table (``quotas/seed.py``), all in aws/us-east-1 (the region ``make run``'s local
cluster serves). Operators edit it in the admin afterwards.

Engines and what the recipes rely on:
- vLLM (``vllm/vllm-openai``) serves the model given by ``--model`` on port 8000, health at ``/health``.
- llama.cpp's server (``ghcr.io/ggml-org/llama.cpp``) reads ``LLAMA_ARG_*`` variables: the deploy sets
  ``LLAMA_ARG_MODEL`` from the GGUF file; ``host`` must be 0.0.0.0 to be reachable; port 8080.
- Text Embeddings Inference serves ``MODEL_ID`` (the platform sets it to the downloaded repository) on 80.

Used by the data migration (with historical models) and by ``endpoints.catalog.model_catalog_seed``.
"""

VLLM_IMAGE = "vllm/vllm-openai:v0.10.2"
LLAMACPP_CPU_IMAGE = "ghcr.io/ggml-org/llama.cpp:server"
LLAMACPP_CUDA_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-cuda"
TEI_CPU_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8"
TEI_TURING_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:turing-1.8"  # T4 is a Turing GPU

REGION = ("aws", "us-east-1")
# GPU recipes scale to zero after 15 idle minutes (the gateway wakes them); CPU ones keep a replica.
GPU_SCALING = {"min_replica": 0, "max_replica": 1, "scale_to_zero_timeout": 15}
CPU_SCALING = {"min_replica": 1, "max_replica": 1, "scale_to_zero_timeout": None}


def _vllm(repo_id: str, max_model_len: int) -> dict:
    return {"engine": "vllm", "image_url": VLLM_IMAGE, "engine_options": {},
            "args": ["--model", "/repository", "--served-model-name", repo_id, "--max-model-len", str(max_model_len),
                     "--gpu-memory-utilization", "0.9"], **GPU_SCALING}


def _llamacpp(gguf_file: str, *, gpu: bool) -> dict:
    options = {"host": "0.0.0.0", "ctxSize": 8192, **({"nGpuLayers": 99} if gpu else {"threads": 4})}
    return {"engine": "llamacpp", "image_url": LLAMACPP_CUDA_IMAGE if gpu else LLAMACPP_CPU_IMAGE,
            "engine_options": options, "args": None, "gguf_file": gguf_file, **(GPU_SCALING if gpu else CPU_SCALING)}


def _tei(*, gpu: bool) -> dict:
    return {"engine": "tei", "image_url": TEI_TURING_IMAGE if gpu else TEI_CPU_IMAGE, "engine_options": {},
            "args": None, **(GPU_SCALING if gpu else CPU_SCALING)}


# (repo_id, task, license, [(public id, (accelerator, instance type, size), recipe fields), ...]); the first
# recipe of a model is its default.
MODELS = [
    ("meta-llama/Llama-3.1-8B-Instruct", "text-generation", "Llama 3.1 Community License", [
        ("smoky-paella-k3v9t2qd", ("gpu", "nvidia-l4", "x1"), _vllm("meta-llama/Llama-3.1-8B-Instruct", 8192)),
        ("golden-risotto-p7w2m4xa", ("gpu", "nvidia-l40s", "x1"), _vllm("meta-llama/Llama-3.1-8B-Instruct", 32768)),
    ]),
    ("Qwen/Qwen2.5-7B-Instruct", "text-generation", "Apache 2.0", [
        ("zesty-laksa-r8n5c1ej", ("gpu", "nvidia-l4", "x1"), _vllm("Qwen/Qwen2.5-7B-Instruct", 8192)),
        ("tangy-tagine-b2h6s9yu", ("gpu", "nvidia-l40s", "x1"), _vllm("Qwen/Qwen2.5-7B-Instruct", 32768)),
    ]),
    ("Qwen/Qwen2.5-1.5B-Instruct-GGUF", "text-generation", "Apache 2.0", [
        ("crispy-dumpling-f5z8q3lo", ("cpu", "intel-spr", "x4"),
         _llamacpp("qwen2.5-1.5b-instruct-q4_k_m.gguf", gpu=False)),
        ("savory-pierogi-w1j4x7nk", ("cpu", "intel-spr", "x4"),
         _llamacpp("qwen2.5-1.5b-instruct-q8_0.gguf", gpu=False)),
        ("spicy-curry-m6d2r8va", ("gpu", "nvidia-t4", "x1"), _llamacpp("qwen2.5-1.5b-instruct-q8_0.gguf", gpu=True)),
    ]),
    ("BAAI/bge-small-en-v1.5", "sentence-embeddings", "MIT", [
        ("mellow-pho-t9c3k5wb", ("cpu", "intel-spr", "x2"), _tei(gpu=False)),
        ("toasty-falafel-h4q7y2ps", ("gpu", "nvidia-t4", "x1"), _tei(gpu=True)),
    ]),
]


def seed(CatalogModel, CatalogRecipe, InstanceType) -> int:
    """Create the seed models and recipes with the given model classes (historical ones in a migration);
    a model already present is left alone, a recipe whose instance is missing is skipped. Returns the
    recipes created."""
    vendor, region = REGION
    created = 0
    for repo_id, task, license_name, recipes in MODELS:
        model, new = CatalogModel.objects.get_or_create(repo_id=repo_id, defaults={"task": task,
                                                                                    "license": license_name})
        if not new:
            continue
        for position, (public_id, (accelerator, instance_type, size), fields) in enumerate(recipes):
            instance = InstanceType.objects.filter(vendor=vendor, region=region, accelerator=accelerator,
                                                   instance_type=instance_type, instance_size=size).first()
            if instance is None:
                continue
            CatalogRecipe.objects.create(public_id=public_id, model=model, position=position, instance=instance,
                                         **{"gguf_file": "", "env": {}, **fields})
            created += 1
    return created
