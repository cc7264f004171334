"""Print the image's build record (docker/Dockerfile writes it to /opt/xlrepro/image.json).

Run manifests pick it up through XLREPRO_IMAGE_INFO. The image's own digest cannot be known
inside the image; pass it at run time (docker/README.md: -e XLREPRO_IMAGE_DIGEST=...).
"""
import hashlib
import json
import os
import pathlib

locks = pathlib.Path("/opt/xlrepro/locks")
print(json.dumps({
    "base_image": os.environ.get("BASE_IMAGE"),
    "git_commit": os.environ.get("GIT_COMMIT"),
    "lock": os.path.basename(os.environ.get("LOCK", "")),
    "torch_lock": os.path.basename(os.environ.get("TORCH_LOCK", "")) or None,
    "lock_sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(locks.glob("*.lock"))},
    "xlrepro_use_cuda": os.environ.get("XLREPRO_USE_CUDA"),
    "torch_cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST") if os.environ.get("XLREPRO_USE_CUDA") == "1" else None,
    "source_date_epoch": os.environ.get("SOURCE_DATE_EPOCH"),
}, indent=2, sort_keys=True))
