"""Optional training-curve writers beside ``log.jsonl`` (``logging.tensorboard: true``).

Each training run (pre-training, intermediate, chain stage, target, dual encoder) writes its own
TensorBoard event files under ``<run>/tensorboard/``, so ``tensorboard --logdir <out>/runs`` shows
one curve per phase. Scalars, by optimiser step:

  train/loss, train/lr, train/grad_norm    as in the ``train`` events of ``log.jsonl``
  train/tokens_per_s                       real (non-padding) tokens of the step / the step's wall time
  train/loss/<task>                        multi-task: each task's mean micro-batch loss
  eval/score                               the English dev score that early stopping uses

The setting is per experiment output folder: ``configure(out_dir, enabled)`` (called by
``xlrepro.phases.Context.prepare``) records it, and ``hook`` (called by ``xlrepro.train.train``) looks it up
from the run folder ``<out>/runs/<run>``. The ``tensorboard`` package is imported only when a
writer is opened; it is an optional dependency (``pip install 'xlrepro[tensorboard]'``).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

from xlrepro.errors import ConfigError

_ENABLED: dict[str, bool] = {}  # resolved experiment output folder -> logging.tensorboard

INSTALL_HINT = "pip install 'xlrepro[tensorboard]' (or: pip install tensorboard)"


def check_available() -> None:
    """Raise a ``ConfigError`` now (before any training) when the tensorboard package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            f"logging.tensorboard: true needs the tensorboard package, which is not installed; "
            f"{INSTALL_HINT}, or set logging.tensorboard=false"
        )


def configure(out_dir: str | Path, tensorboard: bool) -> None:
    """Record whether the runs under ``out_dir/runs`` write TensorBoard event files."""
    if tensorboard:
        check_available()
    _ENABLED[str(Path(out_dir).resolve())] = bool(tensorboard)


def enabled_for(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir).resolve()
    return _ENABLED.get(str(run_dir.parent.parent), False) if run_dir.parent.name == "runs" else False


def count_tokens(batch) -> int:
    """Real tokens of a micro-batch: the sum of its attention masks (a ``Batch`` or a dict of tensors)."""
    inputs = getattr(batch, "inputs", batch)
    if not isinstance(inputs, dict):
        return 0
    return int(sum(int(v.sum()) for k, v in inputs.items() if k.endswith("attention_mask") and hasattr(v, "sum")))


class TensorBoardLog:
    """A ``log`` callable that passes every event on and writes the curves of ``train``/``eval`` events."""

    def __init__(self, log: Callable[[dict], None], logdir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.log = log
        self.writer = SummaryWriter(log_dir=str(logdir), flush_secs=10)
        self.last_time: float | None = None

    def __call__(self, event: dict) -> None:
        self.log(event)
        kind, step = event.get("event"), event.get("step")
        if step is None:
            return
        w = self.writer
        if kind == "train":
            for key in ("loss", "lr", "grad_norm"):
                if isinstance(event.get(key), (int, float)):
                    w.add_scalar(f"train/{key}", float(event[key]), step)
            for task, loss in (event.get("task_loss") or {}).items():
                w.add_scalar(f"train/loss/{task}", float(loss), step)
            if event.get("tokens") and event.get("step_s"):
                w.add_scalar("train/tokens_per_s", event["tokens"] / event["step_s"], step)
        elif kind == "eval" and isinstance(event.get("score"), (int, float)):
            w.add_scalar("eval/score", float(event["score"]), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def hook(run_dir: str | Path, log: Callable[[dict], None]) -> Callable[[dict], None]:
    """``log`` itself, or a ``TensorBoardLog`` around it when the run's experiment asked for one."""
    if not enabled_for(run_dir):
        return log
    return TensorBoardLog(log, Path(run_dir) / "tensorboard")


def close(log) -> None:
    if isinstance(log, TensorBoardLog):
        log.close()


def step_timer() -> float:
    return time.perf_counter()
