"""The DeepSpeed engine (xlrepro.ds_engine) on CPU: one process without a launcher, and two
ranks under ``python -m torch.distributed.run`` (gloo) on a tiny model (tests/ds_worker.py).

Tolerances: with dropout off, world size 1 and 2 see the same micro-batches in the same order and
average the same gradients, so their loss trajectories agree to float32 rounding (1e-5 absolute
is asserted; on the build host they were bit-identical). The DeepSpeed engine against the torch
engine in one process: also 1e-5 in fp32; bf16 casts the forward pass, so 0.02 there.

DeepSpeed compiles its shared-memory communication op (and, for offload, its CPU Adam) on first
use; ``nox -s tests`` keeps them in TORCH_EXTENSIONS_DIR inside .nox so later runs reuse them.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xlrepro.config import TrainConfig, load_config
from xlrepro.ds_engine import resolve_ds_config
from xlrepro.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "ds_worker.py"
sys.path.insert(0, str(WORKER.parent))

try:
    import deepspeed  # noqa: F401

    HAVE_DS = True
except ImportError:
    HAVE_DS = False

# nox -s tests installs deepspeed and sets XLREPRO_REQUIRE_DEEPSPEED=1: there a missing deepspeed fails
needs_ds = pytest.mark.skipif(
    not HAVE_DS and os.environ.get("XLREPRO_REQUIRE_DEEPSPEED") != "1",
    reason="deepspeed is not installed (pip install -r requirements/deepspeed.txt)",
)


def _require_ds():
    if not HAVE_DS:
        pytest.fail("XLREPRO_REQUIRE_DEEPSPEED=1 but deepspeed is not importable")


# ---------------------------------------------------------------------- the image's prebuilt ops (no DeepSpeed run)

CPUINFO = (
    "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 avx avx2 fma hypervisor {extra}\n\nprocessor\t: 1\nflags\t\t: fpu\n"
)


def _image_record(tmp_path, flags, ops_dir):
    rec = tmp_path / "image.json"
    rec.write_text(json.dumps({"deepspeed": {"version": "0.19.8", "ops_dir": ops_dir, "build_cpu_flags": flags}}))
    return str(rec)


def test_cpu_isa_flags_reads_the_first_flags_line():
    from xlrepro.ds_engine import cpu_isa_flags

    assert cpu_isa_flags(CPUINFO.format(extra="avx512f")) == ["avx", "avx2", "avx512f", "fma", "sse", "sse2", "ssse3"]
    assert cpu_isa_flags("no flags here") == []


def test_prebuilt_ops_of_a_richer_cpu_are_not_loaded(tmp_path, monkeypatch):
    """Ops compiled (-march=native) on a CPU with AVX-512 must not load on one without it."""
    from xlrepro.ds_engine import ensure_ops_dir

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/opt/xlrepro/torch_extensions")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rec = _image_record(tmp_path, ["avx", "avx2", "avx512f", "fma"], "/opt/xlrepro/torch_extensions")
    # same features (the hypervisor flag is not an instruction set): the image's folder stays
    assert ensure_ops_dir(rec, CPUINFO.format(extra="avx512f")) is None
    assert os.environ["TORCH_EXTENSIONS_DIR"] == "/opt/xlrepro/torch_extensions"
    # this CPU lacks avx512f: a per-CPU cache instead, keyed by this CPU's flags
    folder = ensure_ops_dir(rec, CPUINFO.format(extra=""))
    assert folder and Path(folder).is_dir() and Path(folder).parent == tmp_path / "cache"
    assert os.environ["TORCH_EXTENSIONS_DIR"] == folder
    assert ensure_ops_dir(rec, CPUINFO.format(extra="")) is None, "already moved: a second call changes nothing"


@needs_ds
def test_nothing_is_prebuilt_for_a_gpu_accelerator(monkeypatch, capsys):
    """On a GPU host the ZeRO configs without offload need no DeepSpeed op, and its CUDA op builds
    would need nvcc: prebuild_ops builds nothing there."""
    _require_ds()
    import deepspeed.accelerator as acc

    from xlrepro.ds_engine import prebuild_ops

    class FakeCuda:
        def device_name(self, *a):
            return "cuda"

        def create_op_builder(self, name):
            raise AssertionError(f"{name} must not be built for a GPU accelerator")

    monkeypatch.setattr(acc, "get_accelerator", lambda: FakeCuda())
    assert prebuild_ops() == {}
    assert "no op prebuilt" in capsys.readouterr().out


def test_a_chosen_extensions_folder_or_no_record_is_left_alone(tmp_path, monkeypatch):
    from xlrepro.ds_engine import ensure_ops_dir

    rec = _image_record(tmp_path, ["avx512f"], "/opt/xlrepro/torch_extensions")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "mine"))
    assert ensure_ops_dir(rec, CPUINFO.format(extra="")) is None
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(tmp_path / "mine")
    monkeypatch.delenv("XLREPRO_IMAGE_INFO", raising=False)
    assert ensure_ops_dir(None, CPUINFO.format(extra="")) is None  # not in the image
    assert ensure_ops_dir(str(tmp_path / "missing.json"), CPUINFO.format(extra="")) is None


# ---------------------------------------------------------------------- config reconciliation (no DeepSpeed run)


def _cfg(**kw):
    return TrainConfig(
        **{"batch_size": 4, "grad_accum": 4, "max_grad_norm": 1.0, "engine": "deepspeed", "deepspeed": "zero2", **kw}
    )


def test_auto_keys_are_filled_from_the_train_config():
    ds = resolve_ds_config(_cfg(), world=2, cuda=False)
    assert ds["train_batch_size"] == 16 and ds["train_micro_batch_size_per_gpu"] == 4
    assert ds["gradient_accumulation_steps"] == 2 and ds["gradient_clipping"] == 1.0
    assert ds["zero_optimization"]["stage"] == 2


def _write(tmp_path, obj, name="ds.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return str(p)


def test_conflicting_values_are_rejected_with_the_file_and_key(tmp_path):
    path = _write(tmp_path, {"gradient_clipping": 0.5, "zero_optimization": {"stage": 1}})
    with pytest.raises(ConfigError, match=r"ds\.json: gradient_clipping = 0\.5 conflicts with train\.max_grad_norm"):
        resolve_ds_config(_cfg(deepspeed=path), world=1, cuda=False)
    path = _write(tmp_path, {"gradient_accumulation_steps": 4})
    with pytest.raises(
        ConfigError, match=r"gradient_accumulation_steps = 4 conflicts with train\.grad_accum / world size"
    ):
        resolve_ds_config(_cfg(deepspeed=path), world=2, cuda=False)
    # agreeing explicit values are fine
    path = _write(tmp_path, {"gradient_accumulation_steps": 2, "train_batch_size": 16})
    assert resolve_ds_config(_cfg(deepspeed=path), world=2, cuda=False)["gradient_accumulation_steps"] == 2
    path = _write(tmp_path, {"optimizer": {"type": "AdamW"}})
    with pytest.raises(ConfigError, match=r"'optimizer': xlrepro builds the optimizer from train\.lr"):
        resolve_ds_config(_cfg(deepspeed=path), world=1, cuda=False)
    (tmp_path / "bad.json").write_text('{"zero_optimization": {"stage": 2},\n}')
    with pytest.raises(ConfigError, match=r"bad\.json: invalid JSON at line 2"):
        resolve_ds_config(_cfg(deepspeed=str(tmp_path / "bad.json")), world=1, cuda=False)


def test_grad_accum_must_share_out_among_the_ranks():
    with pytest.raises(ConfigError, match="train.grad_accum = 3 is not a multiple of the world size 2"):
        resolve_ds_config(_cfg(grad_accum=3), world=2, cuda=False)


def test_fp16_without_a_gpu_is_an_xlrepro_error():
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        resolve_ds_config(_cfg(deepspeed="zero2-fp16"), world=1, cuda=False)
    assert resolve_ds_config(_cfg(deepspeed="zero2-fp16"), world=1, cuda=True)["fp16"]["enabled"] is True


def test_run_config_selects_the_engine_and_checks_the_deepspeed_config():
    cfg = load_config(
        "smoke",
        [
            "target.train.engine=deepspeed",
            "target.train.deepspeed=zero3",
            "pretrain.engine=deepspeed",
            "pretrain.deepspeed=zero1",
        ],
    )
    assert cfg.target.train.engine == "deepspeed" and cfg.pretrain.deepspeed == "zero1"
    with pytest.raises(ConfigError, match=r"target.train.deepspeed: engine 'deepspeed' needs a DeepSpeed config"):
        load_config("smoke", ["target.train.engine=deepspeed"])
    with pytest.raises(ConfigError, match=r"no DeepSpeed config 'zero4'.*did you mean"):
        load_config("smoke", ["target.train.engine=deepspeed", "target.train.deepspeed=zero4"])
    with pytest.raises(ConfigError, match=r"intermediate.train.engine: 'deepspped' is not one of"):
        load_config("smoke", ["intermediate.train.engine=deepspped"])


# ---------------------------------------------------------------------- one process, no launcher


def _train(engine, ds=None, run_dir=None, crash_at=None, token_budget=None, steps=8, evaluate=False):
    from ds_worker import setup

    from xlrepro.train import Stream, train

    m, feats, collate = setup()
    cfg = TrainConfig(
        lr=1e-3,
        batch_size=4,
        grad_accum=2,
        max_steps=steps,
        checkpoint_every_steps=3,
        eval_every_steps=2 if evaluate else 1000,
        patience=100,
        warmup_proportion=0.2,
        engine=engine,
        deepspeed=ds,
        token_budget=token_budget,
        packing_window=16,
    )
    calls = {"n": 0}
    dev = collate(feats[:16])

    def loss_fn(model, b):
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise KeyboardInterrupt("simulated crash")
        return torch.nn.functional.cross_entropy(model("t", **b.inputs), b.targets["labels"])

    def ev():
        return -float(torch.nn.functional.cross_entropy(m("t", **dev.inputs), dev.targets["labels"]))

    events = []
    run_dir.mkdir(parents=True, exist_ok=True)
    train(
        m,
        Stream("t", feats, collate, loss_fn),
        cfg,
        seed=5,
        run_dir=run_dir,
        evaluate=ev if evaluate else None,
        log=lambda e: events.append(json.loads(json.dumps(e))),
    )  # a snapshot, as a log file has
    return [e["loss"] for e in events if e["event"] == "train"], m, events


def _max_param_diff(a, b):
    return max(float((p.float() - q.float()).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.slow
@needs_ds
@pytest.mark.parametrize("config", ["zero0", "zero1", "zero2", "zero3"])
def test_every_zero_stage_trains_like_the_torch_engine(tmp_path, config):
    """No launcher variables: the engine sets up its own one-process gloo group (no mpi4py)."""
    _require_ds()
    for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        assert v not in os.environ or os.environ.get("WORLD_SIZE") == "1"
    base, m0, _ = _train("torch", run_dir=tmp_path / "torch", evaluate=True)
    ds, m1, events = _train("deepspeed", config, run_dir=tmp_path / "ds", evaluate=True)
    assert len(ds) == len(base) == 8
    assert max(abs(a - b) for a, b in zip(ds, base)) < 1e-5, (ds, base)
    assert _max_param_diff(m0, m1) < 1e-5
    # a plain fp32 module comes back (ZeRO-3 partitions gathered, hooks gone): it runs and saves like any other
    assert all(p.dtype == torch.float32 and p.numel() > 0 for p in m1.parameters())
    assert [e["event"] for e in events].count("reload_best") == 1
    assert not (tmp_path / "ds" / "ds_checkpoint").exists(), "a finished run removes its checkpoints"


@pytest.mark.slow
@needs_ds
def test_bf16_on_cpu_and_packed_batches(tmp_path):
    _require_ds()
    base, m0, _ = _train("torch", run_dir=tmp_path / "torch")
    bf16, m1, _ = _train("deepspeed", "zero2-bf16", run_dir=tmp_path / "bf16")
    assert max(abs(a - b) for a, b in zip(bf16, base)) < 0.02, (bf16, base)
    assert next(m1.parameters()).dtype == torch.float32  # the fp32 master weights come back
    # token-budget micro-batches of varying size: each is the mean over its examples, weighted 1/grad_accum
    packed_base, _, _ = _train("torch", run_dir=tmp_path / "tp", token_budget=40)
    packed, _, _ = _train("deepspeed", "zero3", run_dir=tmp_path / "dp", token_budget=40)
    assert max(abs(a - b) for a, b in zip(packed, packed_base)) < 1e-5


@pytest.mark.slow
@needs_ds
@pytest.mark.parametrize("config", ["zero2", "zero3-bf16"])
def test_resume_from_a_deepspeed_checkpoint_reproduces_the_trajectory(tmp_path, config):
    _require_ds()
    full, m_full, _ = _train("deepspeed", config, run_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        _train(
            "deepspeed", config, run_dir=tmp_path / "cut", crash_at=2 * 7 + 1
        )  # in step 8, after the step-6 checkpoint
    latest = json.loads((tmp_path / "cut" / "ds_checkpoint" / "latest.json").read_text())
    tags = sorted(p.name for p in (tmp_path / "cut" / "ds_checkpoint").iterdir() if p.is_dir())
    assert latest["tag"] == "step6" and tags == ["step6"], "older checkpoints are removed once the pointer moves"
    resumed, m_res, events = _train("deepspeed", config, run_dir=tmp_path / "cut")
    assert events[0] == {"event": "resume", "step": 6, "micro": {"t": 12}}
    assert resumed == full[6:]
    assert _max_param_diff(m_full, m_res) == 0.0


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
@needs_ds
def test_resume_refuses_a_planted_pickle_in_the_deepspeed_checkpoint(tmp_path):
    """DeepSpeed's own loader would unpickle it (torch.load(weights_only=False)); the engine's is replaced."""
    _require_ds()
    from xlrepro.errors import DataFormatError

    with pytest.raises(KeyboardInterrupt):
        _train("deepspeed", "zero2", run_dir=tmp_path / "cut", crash_at=2 * 4 + 1)  # after the step-3 checkpoint
    (states,) = (tmp_path / "cut" / "ds_checkpoint").glob("step3/mp_rank_00_model_states.pt")
    marker = tmp_path / "pwned"
    torch.save({"module": _Planted(marker)}, states)
    with pytest.raises(DataFormatError, match="mp_rank_00_model_states.pt"):
        _train("deepspeed", "zero2", run_dir=tmp_path / "cut")
    assert not marker.exists(), "the planted code ran"


@pytest.mark.slow
@needs_ds
def test_optimizer_offload_steps_with_deepspeeds_cpu_adam(tmp_path):
    """ZeRO-Offload uses DeepSpeedCPUAdam (the cpu_adam op, compiled once and cached)."""
    _require_ds()
    base, _, _ = _train("torch", run_dir=tmp_path / "torch", steps=4)
    off, _, _ = _train("deepspeed", "zero2-offload", run_dir=tmp_path / "off", steps=4)
    assert max(abs(a - b) for a, b in zip(off, base)) < 1e-4, (off, base)


@needs_ds
def test_fp16_on_cpu_stops_before_deepspeed(tmp_path):
    _require_ds()
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        _train("deepspeed", "zero2-fp16", run_dir=tmp_path / "fp16")


# ---------------------------------------------------------------------- several ranks (torchrun, gloo)


def _torchrun(out: Path, *args, nproc=2, timeout=150, wait=True):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        str(WORKER),
        str(out),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XLREPRO_PROGRESS": "0"}
    for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(v, None)  # this test process's own single-rank group must not leak into the launch
    if not wait:
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
        )
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return p


def _ranks(out: Path, n=2):
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]


def _losses(events):
    return [e["loss"] for e in events if e["event"] == "train"]


ARGS = ["--steps", "8", "--grad-accum", "2", "--checkpoint-every", "3", "--eval-every", "4"]


@pytest.fixture(scope="module")
def zero2_two_ranks(tmp_path_factory):
    if not HAVE_DS:
        pytest.skip("deepspeed is not installed")
    out = tmp_path_factory.mktemp("zero2-w2")
    p = _torchrun(out, "zero2", *ARGS)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out


PACKED = ["--packed", "--token-budget", "40"]  # varlen attention, micro-batches of at most 40 real tokens


@pytest.mark.slow
@needs_ds
@pytest.mark.parametrize("config", ["zero1", "zero2"])
def test_two_ranks_match_one_rank_with_the_same_global_batch(tmp_path, config, zero2_two_ranks):
    """ZeRO-2 with fixed-size batches; ZeRO-1 with packed token-budget batches (their sizes vary)."""
    _require_ds()
    args = ARGS if config == "zero2" else ARGS + PACKED
    if config == "zero2":
        two = zero2_two_ranks
    else:
        two = tmp_path / "w2"
        p = _torchrun(two, config, *args)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    one = tmp_path / "w1"
    p = _torchrun(one, config, *args, nproc=1)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (r1,), (a, b) = _ranks(one, 1), _ranks(two)
    assert a["world"] == 2 and b["world"] == 2 and r1["world"] == 1
    # the logged loss is the global mean over both ranks' micro-batches, not one rank's
    l1, l2 = _losses(r1["events"]), _losses(a["events"])
    assert len(l1) == len(l2) == 8
    assert max(abs(x - y) for x, y in zip(l1, l2)) < 1e-5, (l1, l2)
    assert a["param_sha256"] == b["param_sha256"], "the ranks' parameters differ"
    assert b["events"] == [], "only rank 0 logs"
    assert not (two / "run" / "ds_checkpoint").exists()


@pytest.mark.slow
@needs_ds
@pytest.mark.parametrize("attempt", range(5))
def test_zero3_two_ranks_train_and_exit_cleanly(tmp_path, attempt):
    """Five launches, five clean exits (the teardown is explicit); the first also hands the
    consolidated encoder off as safetensors and checks it loads with the pipeline's loader."""
    _require_ds()
    extra = ["--save-encoder"] if attempt == 0 else []
    p = _torchrun(tmp_path, "zero3", "--steps", "4", "--checkpoint-every", "2", "--eval-every", "2", *extra)
    text = p.stdout + p.stderr
    assert p.returncode == 0 and "terminate called" not in text, text[-4000:]
    a, b = _ranks(tmp_path)
    assert a["step"] == b["step"] == 4 and a["param_sha256"] == b["param_sha256"]
    if attempt == 0:
        from ds_worker import digest

        from xlrepro.model import load_encoder

        assert (tmp_path / "encoder" / "model.safetensors").exists()
        enc = load_encoder(tmp_path / "encoder")
        assert digest(enc.state_dict()) == a["encoder_sha256"]


@pytest.mark.slow
@needs_ds
def test_killing_one_rank_stops_the_run_and_a_restart_resumes_to_the_same_result(tmp_path, zero2_two_ranks):
    _require_ds()
    out = tmp_path / "killed"
    proc = _torchrun(out, "zero2", *ARGS, "--step-sleep", "0.4", wait=False)
    latest = out / "run" / "ds_checkpoint" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["tag"] == "step3":
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before its first checkpoint: " + proc.stdout.read()[-3000:]
    os.kill(int((out / "pid-rank1").read_text()), signal.SIGKILL)  # between the step-3 and step-6 checkpoints
    try:
        stdout, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the launcher did not stop the run after one rank was killed") from None
    assert proc.returncode != 0, "a run with a killed rank must fail"
    assert not (out / "rank0.json").exists(), "rank 0 must not finish alone"
    tag = json.loads(latest.read_text())["tag"]
    assert tag in ("step3", "step6")
    p = _torchrun(out, "zero2", *ARGS)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    a, b = _ranks(out)
    full = _ranks(zero2_two_ranks)[0]
    assert a["events"][0]["event"] == "resume" and a["events"][0]["step"] == int(tag[4:])
    assert a["param_sha256"] == b["param_sha256"] == full["param_sha256"]
    assert a["final_dev"] == full["final_dev"] and a["best_step"] == full["best_step"]
    assert _losses(a["events"]) == _losses(full["events"])[int(tag[4:]) :]


# ---------------------------------------------------------------------- xlrepro plan


@needs_ds
def test_plan_uses_deepspeeds_estimators_for_xlmr_large():
    _require_ds()
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xlrepro.estimate import MFU
    from xlrepro.models import get_family
    from xlrepro.plan import encoder_params, plan

    with torch.device("meta"):  # the count matches the real module's
        m = XLMRobertaModel(
            XLMRobertaConfig(**get_family("xlmr").published_configs["xlm-roberta-large"]), add_pooling_layer=False
        )
    total, largest = encoder_params(load_config("xstilts-squad"))
    assert total == sum(p.numel() for p in m.parameters()) and 550e6 < total < 570e6
    assert largest == max(p.numel() for p in m.parameters())
    p = plan(load_config("xstilts-squad"), gpus_per_node=4)
    mem = {(r["zero_stage"], r["offload"]): r["gpu_gib"] for r in p["memory"]}
    assert mem[(2, "none")] == round(
        estimate_zero2_model_states_mem_needs(total, 4, 1, cpu_offload=False)[1] / 2**30, 2
    )
    assert mem[(3, "optimizer+params")] == round(
        estimate_zero3_model_states_mem_needs(total, largest, 4, 1, True, True)[1] / 2**30, 2
    )
    assert mem[(0, "none")] > mem[(1, "none")] > mem[(2, "none")] > mem[(2, "optimizer")]
    # GPU-hours = 6 x params x tokens / (peak x MFU), the peak of the precision the phases train in:
    # the paper recipe is fp32 (H100: 67 TFLOP/s on CUDA cores); a bf16 DeepSpeed config uses 989.4
    assert {ph["precision"] for ph in p["phases"]} == {"fp32"}
    assert p["gpu_hours"] == round(6 * total * p["training_tokens_upper_bound"] / (67e12 * MFU) / 3600, 1)
    bf16 = plan(
        load_config("xstilts-squad", ["intermediate.train.deepspeed=zero2-bf16", "target.train.deepspeed=zero3-bf16"]),
        gpus_per_node=4,
    )
    assert {ph["precision"] for ph in bf16["phases"]} == {"bf16"}
    assert bf16["gpu_hours"] == round(6 * total * bf16["training_tokens_upper_bound"] / (989.4e12 * MFU) / 3600, 1)
    mixed = plan(load_config("xstilts-squad", ["intermediate.train.deepspeed=zero2-bf16"]), gpus_per_node=4)
    inter = next(ph for ph in mixed["phases"] if ph["phase"].startswith("intermediate"))
    assert inter["precision"] == "bf16" and inter["gpu_hours"] == pytest.approx(
        6 * total * inter["tokens"] / (989.4e12 * MFU) / 3600
    )
    assert p["gpu_hours"] > mixed["gpu_hours"] > bf16["gpu_hours"]
    squad = next(ph for ph in p["phases"] if ph["phase"] == "intermediate:squad")
    assert squad["steps"] == -(-87599 * 3 // 32) and squad["tokens"] == squad["steps"] * 32 * 384


# ---------------------------------------------------------------------- the pipeline, one process


def _smoke_args(out):
    inter = (
        "{lr: 2.0e-4, batch_size: 8, grad_accum: 2, max_steps: 6, eval_every_steps: 3, eval_subset: 40, "
        "checkpoint_every_steps: 3, max_seq_length: 48, engine: deepspeed, deepspeed: zero3}"
    )
    target = (
        "{lr: 2.0e-4, batch_size: 8, grad_accum: 2, max_steps: 6, eval_every_steps: 3, eval_subset: 40, "
        "checkpoint_every_steps: 3, max_seq_length: 48, engine: deepspeed, deepspeed: zero2-bf16}"
    )
    return [
        "train",
        "smoke",
        "--out",
        str(out),
        "smoke.n_train=120",
        "smoke.n_dev=40",
        "smoke.n_test=40",
        "smoke.n_corpus=600",
        "pretrain.steps=6",
        "pretrain.batch_size=16",
        "pretrain.engine=deepspeed",
        "pretrain.deepspeed=zero2",
        f"intermediate.train={inter}",
        "intermediate.mlm_mix=0.3",
        "target.tasks=[xnli]",
        "target.per_task={}",
        f"target.train={target}",
        "retrieval.tasks=[]",
        "controls=[]",
    ]


def _check_smoke_run(out):
    results = json.loads((out / "results.json").read_text())
    assert {r["task"] for r in results["records"]} == {"xnli"}
    inter_dir = next((out / "runs").glob("intermediate-*"))
    assert (inter_dir / "encoder" / "model.safetensors").exists()
    events = [json.loads(l) for l in (inter_dir / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2, 3, 4, 5, 6], "one writer: rank 0"
    assert {"hellaswag", "mlm"} <= set().union(*(e.get("task_loss", {}) for e in events if e["event"] == "train"))
    assert not list((out / "runs").glob("*/ds_checkpoint"))
    return results


@pytest.mark.slow
@needs_ds
def test_xlrepro_train_on_two_ranks_with_multi_task_zero3(tmp_path):
    """Under torchrun the ranks run the pipeline in lockstep; MLM-mixed multi-task micro-batches of
    different tasks on different ranks still gather and reduce the same parameters (ZeRO-3)."""
    _require_ds()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "xlrepro",
        *_smoke_args(tmp_path),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    p = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**env, "XLREPRO_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert p.stdout.count("result records") == 1, "rank 0 alone reports"
    _check_smoke_run(tmp_path)


def _launch_env():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK")
    }
    return {**env, "XLREPRO_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
@needs_ds
def test_xlrepro_train_under_the_deepspeed_launcher_on_one_node_and_on_two(tmp_path):
    """The `deepspeed` launcher (it passes --local_rank=N before the command): two ranks on one node,
    and the multi-node path — a hostfile of two nodes, each started with --no_ssh --node_rank i as a
    cluster scheduler would start them (here both on this machine). The same world size gives the
    same results."""
    _require_ds()
    from xlrepro.distributed import _free_port

    launcher = Path(sys.executable).parent / "deepspeed"
    assert launcher.exists(), f"no deepspeed launcher next to {sys.executable}"
    one = tmp_path / "one-node"
    p = subprocess.run(
        [
            str(launcher),
            "--num_gpus",
            "2",
            "--master_port",
            str(_free_port()),
            "--module",
            "xlrepro",
            *_smoke_args(one),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=_launch_env(),
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert "--local_rank=1" in p.stdout + p.stderr, "the launcher passed --local_rank (the CLI accepts it)"
    first = _check_smoke_run(one)

    two = tmp_path / "two-nodes"
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=1\nnode-b slots=1\n")
    port = str(_free_port())
    nodes = [
        subprocess.Popen(
            [
                str(launcher),
                "--hostfile",
                str(hostfile),
                "--no_ssh",
                "--node_rank",
                str(i),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                port,
                "--module",
                "xlrepro",
                *_smoke_args(two),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_launch_env(),
        )
        for i in (0, 1)
    ]
    outs = [n.communicate(timeout=300)[0] for n in nodes]
    for i, (n, out) in enumerate(zip(nodes, outs)):
        assert n.returncode == 0, f"node {i}:\n{out[-4000:]}"
        assert f"nnodes=2, num_local_procs=1, node_rank={i}" in out
    assert sum(o.count("result records") for o in outs) == 1, "rank 0 (on node 0) alone reports"
    second = _check_smoke_run(two)
    values = lambda r: sorted((x["language"], x["split"], x["value"]) for x in r["records"])  # noqa: E731
    assert values(first) == values(second)


@pytest.mark.slow
@needs_ds
def test_xlrepro_train_runs_every_phase_on_deepspeed_in_one_process(tmp_path):
    """`xlrepro train` with no launcher: MLM pre-training on ZeRO-2, the intermediate task mixed with
    MLM on ZeRO-3 (its consolidated encoder handed off as safetensors), the target on ZeRO-2 bf16."""
    _require_ds()
    cmd = [sys.executable, "-m", "xlrepro", *_smoke_args(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**env, "XLREPRO_PROGRESS": "0"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert "mpi4py" not in p.stderr
    _check_smoke_run(tmp_path)


@pytest.mark.slow
@needs_ds
def test_a_failing_rank_is_named_and_stops_the_run(tmp_path):
    _require_ds()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "xlrepro",
        "train",
        "smoke",
        "--out",
        str(tmp_path),
        "smoke.n_train=60",
        "smoke.n_dev=20",
        "smoke.n_test=20",
        "smoke.n_corpus=300",
        "pretrain.steps=0",
        "intermediate.train.engine=deepspeed",
        "intermediate.train.deepspeed=zero2",
        "intermediate.train.grad_accum=3",
        "target.tasks=[]",
        "retrieval.tasks=[]",
        "controls=[]",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    p = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**env, "XLREPRO_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    )
    assert p.returncode != 0
    assert "xlrepro: error (rank 1 of 2): train.grad_accum = 3 is not a multiple of the world size 2" in p.stderr, (
        p.stderr[-3000:]
    )
    assert not (tmp_path / "results.json").exists()
