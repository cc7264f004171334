"""One cell's run graph: every run a resolved config makes, hidden trainings included.

``build_graph(ctx)`` walks the recipe once and returns the nodes in execution order:

  pretrain (MLM; only with ``pretrain.steps > 0``)
  -> intermediate (only with intermediate tasks)
  -> per retrieval task: its encoder's training where it has one (SQuAD MRC for XTREME-R Tatoeba,
     the dual encoder for LAReQA/Mewsli-X), then the retrieval run
  -> per target task (then per control): its chain stages, then the target run

Each node's spec is computed here, once; its key is that spec's hash, and the orchestrator runs
the node with that very spec. A run two branches share (the LAReQA dual encoder that Tatoeba also
reads under ``squad_dual_encoder``) is one node. Every node has at most one upstream node: the
run whose encoder it starts from.
"""

from __future__ import annotations

from xlrepro.config import config_hash
from xlrepro.phases.base import Node, Phase
from xlrepro.phases.chain import Chain
from xlrepro.phases.dual_encoder import DualEncoderTraining, DualRetrieval
from xlrepro.phases.intermediate import Intermediate
from xlrepro.phases.pretrain import Pretrain
from xlrepro.phases.retrieval import Retrieval
from xlrepro.phases.squad_mrc import SquadMrc
from xlrepro.phases.target import Target
from xlrepro.tasks import get_task


class RunGraph:
    """Nodes by key, in insertion (= dependency and execution) order."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.nodes: dict[str, Node] = {}

    def add(self, phase: Phase, upstream: Node | None) -> Node:
        spec = phase.spec(self.ctx, upstream)  # the node's identity: computed once, here
        key = config_hash(spec)
        if key not in self.nodes:
            self.nodes[key] = Node(phase, spec, key, upstream.key if upstream is not None else None)
        return self.nodes[key]

    def upstream(self, node: Node) -> Node | None:
        return self.nodes[node.upstream] if node.upstream is not None else None

    def ancestors(self, node: Node) -> list[Node]:
        """``node`` and the nodes it starts from, upstream first."""
        chain = [node]
        while chain[0].upstream is not None:
            chain.insert(0, self.nodes[chain[0].upstream])
        return chain

    def find(self, kind: str, task: str) -> Node:
        """The node of ``kind`` and ``task`` (the first, where several share them)."""
        for n in self.nodes.values():
            if n.kind == kind and n.task == task:
                return n
        raise KeyError(f"no {kind} node of task {task!r} in the graph")

    def __iter__(self):
        return iter(list(self.nodes.values()))

    def __len__(self) -> int:
        return len(self.nodes)


def encoder_nodes(graph: RunGraph) -> Node | None:
    """Add the encoder chain (pre-training, intermediate) of the graph's config; returns its last node."""
    cfg = graph.ctx.cfg
    enc = None
    if cfg.pretrain is not None and cfg.pretrain.steps != 0:
        enc = graph.add(Pretrain(), None)
    if cfg.intermediate.tasks:
        enc = graph.add(Intermediate(cfg.intermediate.tasks), enc)
    return enc


def retrieval_nodes(graph: RunGraph, task: str, enc: Node | None) -> Node:
    from xlrepro.dual_encoder import DUAL_ENCODER_TASKS, ENCODER_SOURCES, retrieval_encoder_source

    if task in DUAL_ENCODER_TASKS:  # LAReQA, Mewsli-X: a dual encoder fine-tuned on the English source
        return graph.add(DualRetrieval(task), graph.add(DualEncoderTraining(task), enc))
    source = retrieval_encoder_source(graph.ctx, task)
    up: Node | None
    if source == "squad_mrc":
        up = graph.add(SquadMrc(), enc)
    elif source == "squad_dual_encoder":
        up = graph.add(DualEncoderTraining("lareqa"), enc)
    elif source == "intermediate":
        up = enc
    else:
        raise ValueError(f"retrieval encoder for {task}: unknown source {source!r} (expected one of {ENCODER_SOURCES})")
    return graph.add(Retrieval(task, source), up)


def target_nodes(graph: RunGraph, task: str, enc: Node | None, control: bool = False, baseline: bool = False) -> Node:
    up: Node | None = enc
    for stage in get_task(task).training_chain()[:-1]:
        up = graph.add(Chain(task, stage, control), up)
    return graph.add(Target(task, control, baseline), up)


def build_graph(
    ctx,
    retrieval: list[str] | None = None,
    targets: list[str] | None = None,
    controls: list[str] | None = None,
    baselines: bool = True,
) -> RunGraph:
    """The run graph of ``ctx.cfg`` (the config's retrieval, target and control tasks unless given).
    ``baselines``: with an intermediate phase, also fine-tune each control task from the pre-trained
    encoder (the single run's no-intermediate contrast; a sweep has its own baseline variant).
    Needs ``ctx.prepare()`` for the smoke world (its corpus is part of the pre-training spec)."""
    cfg = ctx.cfg
    graph = RunGraph(ctx)
    enc = encoder_nodes(graph)
    for task in cfg.retrieval.tasks if retrieval is None else retrieval:
        retrieval_nodes(graph, task, enc)
    for task in cfg.target.tasks if targets is None else targets:
        target_nodes(graph, task, enc)
    for task in cfg.controls if controls is None else controls:
        target_nodes(graph, task, enc, control=True)
    if (
        baselines and cfg.intermediate.tasks
    ):  # and the no-intermediate baseline of the control tasks (the report's contrast)
        base = graph.find("pretrain", "mlm") if cfg.pretrain is not None and cfg.pretrain.steps != 0 else None
        for task in cfg.controls if controls is None else controls:
            target_nodes(graph, task, base, baseline=True)
    return graph
