"""Print the image's build record (docker/Dockerfile writes it to /opt/xlrepro/image.json).

Run manifests pick it up through XLREPRO_IMAGE_INFO. The image's own digest cannot be known
inside the image; pass it at run time (docker/README.md: -e XLREPRO_IMAGE_DIGEST=...).
"""

import hashlib
import json
import os
import pathlib
from importlib import metadata


def _deepspeed() -> dict:
    ops_dir = os.environ.get("TORCH_EXTENSIONS_DIR", "/opt/xlrepro/torch_extensions")
    try:
        version = metadata.version("deepspeed")
    except metadata.PackageNotFoundError:
        return {"version": None}
    from xlrepro.ds_engine import cpu_isa_flags

    root = pathlib.Path(ops_dir)
    return {
        "version": version,
        "ops_dir": ops_dir,
        "prebuilt_ops": sorted({p.parent.name for p in root.rglob("*.so")}),
        "prebuild_requested": os.environ.get("DEEPSPEED_PREBUILD", "").split(),
        # the ops were compiled with -march=native: xlrepro.ds_engine.ensure_ops_dir compares these
        # with the running CPU's flags
        "build_cpu_flags": cpu_isa_flags(),
        "ds_accelerator": os.environ.get("XLREPRO_DS_ACCELERATOR") or None,
    }


locks = pathlib.Path("/opt/xlrepro/locks")
print(
    json.dumps(
        {
            "base_image": os.environ.get("BASE_IMAGE"),
            "git_commit": os.environ.get("GIT_COMMIT"),
            "lock": os.path.basename(os.environ.get("LOCK", "")),
            "torch_lock": os.path.basename(os.environ.get("TORCH_LOCK", "")) or None,
            "lock_sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(locks.glob("*.lock"))},
            "xlrepro_use_cuda": os.environ.get("XLREPRO_USE_CUDA"),
            "torch_cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST")
            if os.environ.get("XLREPRO_USE_CUDA") == "1"
            else None,
            "source_date_epoch": os.environ.get("SOURCE_DATE_EPOCH"),
            "deepspeed": _deepspeed(),
        },
        indent=2,
        sort_keys=True,
    )
)
