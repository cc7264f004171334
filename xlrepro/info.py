"""``xlrepro info``: build metadata, which backend each op runs on (with reasons), and the encoder
families ``model.family`` may name."""

from __future__ import annotations

import json


def ops_status() -> dict:
    # xlrepro.ops imports torch: only when the status is asked for, so that `import xlrepro.info` stays light
    from xlrepro.ops import status

    return status()


def info() -> dict:
    import platform

    import torch

    return {
        "xlrepro": __import__("xlrepro").__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "deepspeed": deepspeed_status(),
        "families": families_status(),
        **ops_status(),
    }


def families_status() -> list[dict]:
    """Each encoder family (``xlrepro.models``): its name, the config.json model types it runs,
    the Hub ids whose published config it knows, and what it is."""
    from xlrepro.models import families

    return [
        {
            "name": f.name,
            "model_types": list(f.model_types),
            "published_configs": sorted(f.published_configs),
            "description": f.description,
        }
        for f in families()
    ]


def deepspeed_status() -> dict:
    """DeepSpeed's version (without importing it: that takes seconds) and the compiled ops its JIT
    loader will find in $TORCH_EXTENSIONS_DIR (the image compiles them at build time)."""
    import os
    from importlib import metadata
    from pathlib import Path

    try:
        version = metadata.version("deepspeed")
    except metadata.PackageNotFoundError:
        return {"version": None}
    ext = os.environ.get("TORCH_EXTENSIONS_DIR")
    ops = sorted({p.parent.name for p in Path(ext).rglob("*.so")}) if ext and Path(ext).is_dir() else []
    return {"version": version, "torch_extensions_dir": ext, "compiled_ops": ops}


def format_info(d: dict) -> str:
    b = d["build"] or {}
    lines = [
        f"xlrepro {d['xlrepro']}  python {d['python']}  torch {d['torch']} (CUDA {d['torch_cuda'] or 'none'})",
        f"GPU: {d['gpu'] or 'none visible'}",
        f"extension xlrepro._C: {'loaded' if d['extension_loaded'] else 'NOT loaded'}"
        + (f" — {d['reason']}" if d["reason"] else ""),
    ]
    if b:
        lines.append(
            f"  built {b.get('built_at')} as {b.get('extension') or 'none'} for torch {b.get('torch_version')}"
            + (
                f", CUDA {b.get('torch_cuda_version')} arch {b.get('cuda_arch_list')}"
                if b.get("extension") == "cuda"
                else ""
            )
            + (f"; {b['reason']}" if b.get("reason") else "")
        )
        lines.append(f"  git {b.get('git_commit') or 'unknown'}; sources: {', '.join(b.get('sources') or [])}")
    ds = d.get("deepspeed") or {}
    if ds.get("version"):
        lines.append(
            f"deepspeed {ds['version']}: compiled ops "
            f"{', '.join(ds['compiled_ops']) or 'none yet (compiled on first use)'}"
            f" in TORCH_EXTENSIONS_DIR={ds['torch_extensions_dir'] or 'default'}"
        )
    else:
        lines.append(
            "deepspeed: not installed (train.engine=deepspeed needs it: pip install --no-build-isolation "
            "-r requirements/deepspeed.txt)"
        )
    lines.append("encoder families (model.family; 'auto' = from config.json's model_type):")
    for f in d.get("families") or []:
        lines.append(f"  {f['name']:<6} model_type {', '.join(f['model_types'])}: {f['description']}")
    lines.append("ops (device: selected backend; others and why not):")
    for op, per_dev in d["ops"].items():
        for dev, v in per_dev.items():
            others = "; ".join(f"{n}: {', '.join(x['reasons'])}" for n, x in v["backends"].items() if x["reasons"])
            lines.append(f"  {op:<24} {dev:<5} -> {v['selected']}" + (f"   ({others})" if others else ""))
    for name, v in (d.get("screens") or {}).items():
        lines.append(
            f"screen={name!r} (knn/knn_both/margin_mine, CPU): available; "
            + (
                "native bf16 GEMM (" + ", ".join(v["native_bf16"]) + ")"
                if v["fast"]
                else "no native bf16 GEMM, slower than fp32 (" + "; ".join(v["reasons"]) + ")"
            )
            + f"; screen kernel: {v['screen_kernel']}"
        )
    return "\n".join(lines)


def main(as_json: bool = False) -> str:
    d = info()
    return json.dumps(d, indent=2, default=str) if as_json else format_info(d)
