"""The public Inference Endpoints price table, as rows for the instance catalog.

Used once by the seeding data migration; operators edit the catalog in the admin afterwards. vCPU and
memory figures for accelerator instances are not in the public table: they are the usual cloud shapes
for those accelerators (the HF client's test data gives nvidia-l4 x1 as 7 vCPUs / 30 GB).
"""

from controlplane.images import DEVICE_RESOURCE

REGIONS = {
    "aws": [("us-east-1", "N. Virginia"), ("eu-west-1", "Ireland")],
    "azure": [("eastus", "Virginia")],
    "gcp": [("us-east4", "Virginia")],
}

# (vendor, accelerator, type, architecture, status, [(size, vcpus, mem_gb, acc_count, acc_mem_gb, $/h), ...])
CATALOG = [
    ("aws", "cpu", "intel-spr", "Intel Sapphire Rapids", "available",
     [("x1", 1, 2, 0, None, "0.033"), ("x2", 2, 4, 0, None, "0.067"), ("x4", 4, 8, 0, None, "0.134"),
      ("x8", 8, 16, 0, None, "0.268"), ("x16", 16, 32, 0, None, "0.536")]),
    ("azure", "cpu", "intel-xeon", "Intel Xeon", "available",
     [("x1", 1, 2, 0, None, "0.060"), ("x2", 2, 4, 0, None, "0.120"), ("x4", 4, 8, 0, None, "0.240"),
      ("x8", 8, 16, 0, None, "0.480")]),
    ("gcp", "cpu", "intel-spr", "Intel Sapphire Rapids", "available",
     [("x1", 1, 2, 0, None, "0.050"), ("x2", 2, 4, 0, None, "0.100"), ("x4", 4, 8, 0, None, "0.200"),
      ("x8", 8, 16, 0, None, "0.400")]),
    ("aws", "cpu", "intel-icl", "Intel Ice Lake", "deprecated",
     [("x1", 1, 2, 0, None, "0.032"), ("x2", 2, 4, 0, None, "0.064"), ("x4", 4, 8, 0, None, "0.128"),
      ("x8", 8, 16, 0, None, "0.256")]),
    ("aws", "gpu", "nvidia-t4", "NVIDIA T4", "available",
     [("x1", 4, 16, 1, 14, "0.5"), ("x4", 48, 192, 4, 56, "3")]),
    ("aws", "gpu", "nvidia-l4", "NVIDIA L4", "available",
     [("x1", 7, 30, 1, 24, "0.8"), ("x4", 47, 186, 4, 96, "3.8")]),
    ("aws", "gpu", "nvidia-a10g", "NVIDIA A10G", "available",
     [("x1", 8, 32, 1, 24, "1"), ("x4", 48, 192, 4, 96, "5")]),
    ("aws", "gpu", "nvidia-l40s", "NVIDIA L40S", "available",
     [("x1", 8, 62, 1, 48, "1.8"), ("x4", 48, 382, 4, 192, "8.3"), ("x8", 192, 1534, 8, 384, "23.5")]),
    ("aws", "gpu", "nvidia-a100", "NVIDIA A100", "available",
     [("x1", 11, 145, 1, 80, "2.5"), ("x2", 22, 290, 2, 160, "5"), ("x4", 44, 580, 4, 320, "10"),
      ("x8", 88, 1160, 8, 640, "20")]),
    ("aws", "gpu", "nvidia-h100", "NVIDIA H100", "deprecated",
     [("x1", 23, 240, 1, 80, "4.5"), ("x2", 46, 480, 2, 160, "9"), ("x4", 92, 960, 4, 320, "18"),
      ("x8", 184, 1920, 8, 640, "36")]),
    ("aws", "gpu", "nvidia-h200", "NVIDIA H200", "available",
     [("x1", 23, 256, 1, 141, "5"), ("x2", 46, 512, 2, 282, "10"), ("x4", 92, 1024, 4, 564, "20"),
      ("x8", 184, 2048, 8, 1128, "40")]),
    ("aws", "gpu", "nvidia-b200", "NVIDIA B200", "deprecated",
     [("x1", 23, 256, 1, 256, "9.25"), ("x2", 46, 512, 2, 512, "18.5"), ("x4", 92, 1024, 4, 1024, "37"),
      ("x8", 184, 2048, 8, 2048, "74")]),
    ("gcp", "gpu", "nvidia-t4", "NVIDIA T4", "available", [("x1", 4, 15, 1, 16, "0.5")]),
    ("gcp", "gpu", "nvidia-l4", "NVIDIA L4", "available",
     [("x1", 7, 30, 1, 24, "0.7"), ("x4", 47, 186, 4, 96, "3.8")]),
    ("gcp", "gpu", "nvidia-a100", "NVIDIA A100", "available",
     [("x1", 12, 85, 1, 80, "3.6"), ("x2", 24, 170, 2, 160, "7.2"), ("x4", 48, 340, 4, 320, "14.4"),
      ("x8", 96, 680, 8, 640, "28.8")]),
    ("gcp", "gpu", "nvidia-h100", "NVIDIA H100", "available",
     [("x1", 26, 234, 1, 80, "10"), ("x2", 52, 468, 2, 160, "20"), ("x4", 104, 936, 4, 320, "40"),
      ("x8", 208, 1872, 8, 640, "80")]),
    ("aws", "neuron", "inf2", "AWS Inferentia2", "available",
     [("x1", 4, 14.5, 1, 32, "0.75"), ("x12", 192, 760, 12, 384, "12")]),
]

# Reserved in the HF client's own test data; kept so `hf endpoints hardware --all` shows the status.
RESERVED = {("gcp", "nvidia-a100", "x8")}

NODE_LABEL = "inference.controlplane.dev/instance-type"


def rows() -> list[dict]:
    """Every catalog row as InstanceType field values."""
    out = []
    for vendor, accelerator, instance_type, architecture, status, sizes in CATALOG:
        resource = DEVICE_RESOURCE.get(accelerator, "")
        tolerations = [{"key": resource, "operator": "Exists", "effect": "NoSchedule"}] if resource else []
        for region, region_label in REGIONS[vendor]:
            for size, vcpus, mem, count, acc_mem, price in sizes:
                out.append({
                    "vendor": vendor, "region": region, "region_label": region_label, "accelerator": accelerator,
                    "instance_type": instance_type, "instance_size": size, "vcpus": vcpus, "memory_gb": mem,
                    "accelerator_count": count, "accelerator_memory_gb": acc_mem, "architecture": architecture,
                    "price_per_hour": price,
                    "status": "reserved" if (vendor, instance_type, size) in RESERVED else status,
                    "node_selector": {NODE_LABEL: instance_type}, "tolerations": tolerations,
                    "accelerator_resource": resource,
                    # Leave headroom for the node's own daemons: request 90 %, limit memory at the full size.
                    "cpu_request": f"{vcpus * 900}m", "memory_request": f"{int(mem * 1024 * 0.9)}Mi",
                    "cpu_limit": "", "memory_limit": f"{int(mem * 1024)}Mi",
                })
    return out
