"""Examples of the task formats, as read from the original files.

Every reader returns a ``ReadResult``: the examples, the file(s) read with their sha256, and a
count of examples skipped by a documented rule (never silently: ``skipped`` names the rule).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field


class Format(str, enum.Enum):
    CLASSIFICATION = "classification"  # sentence or sentence-pair classification
    MULTIPLE_CHOICE = "multiple_choice"
    SPAN_QA = "span_qa"  # extractive QA (SQuAD v1.1 style)
    TAGGING = "tagging"  # token tagging, labels on the first sub-word of each word
    RETRIEVAL = "retrieval"  # encoder only: sentence embeddings, no head


@dataclass
class ClassificationExample:
    guid: str
    text_a: str
    text_b: str | None
    label: str | None  # None where labels are withheld


@dataclass
class MultipleChoiceExample:
    guid: str
    context: str
    choices: list[str]
    label: int | None
    question: str | None = None  # e.g. COPA's "cause"/"effect", CSQA's question


@dataclass
class Answer:
    text: str
    start: int  # character offset in the context (Unicode code points)


@dataclass
class SpanQAExample:
    guid: str
    question: str
    context: str
    answers: list[Answer]
    title: str | None = None
    is_impossible: bool = False


@dataclass
class TaggingExample:
    guid: str
    words: list[str]
    tags: list[str] | None  # None where labels are withheld


@dataclass
class BitextExample:
    """A retrieval corpus: two sides and the gold pairs (by id).

    Tatoeba: ids are line indices and gold pairs are (i, i). BUCC: ids are the corpus ids.
    """

    guid: str
    src_lang: str
    tgt_lang: str
    src_ids: list[str]
    src_sentences: list[str]
    tgt_ids: list[str]
    tgt_sentences: list[str]
    gold: list[tuple[str, str]] | None


@dataclass
class QASentencePool:
    """LAReQA / XQuAD-R: one language's questions and that language's candidate answer sentences.

    Retrieval is language-agnostic: the candidate pool is the union of the sentences of every
    language (``pool_lareqa``), and question ids are shared across languages (11-way parallel),
    so the gold sentences of a question are every pooled sentence whose ``sentence_qids`` holds
    its id. ``contexts[i]`` is the paragraph of sentence i (the LAReQA answer encoder reads the
    sentence together with its paragraph).
    """

    guid: str
    lang: str
    question_ids: list[str]
    questions: list[str]
    sentence_ids: list[str]  # "<lang>:<article>:<paragraph>:<sentence>" (0-based indices)
    sentences: list[str]
    contexts: list[str]
    sentence_qids: list[list[str]]  # ids of the questions whose answer starts in sentence i
    gold: list[tuple[str, str]]  # (question_id, sentence_id) within this language


@dataclass
class EntityMentionExample:
    """Mewsli-X: one entity mention in a WikiNews article, to be linked to a WikiData entity.

    ``start``/``end`` are Unicode code-point offsets into ``context`` (``context[start:end] == mention``).
    """

    guid: str  # the release's example_id
    lang: str
    document_id: str
    context: str
    start: int
    end: int
    mention: str
    entity_id: str | None  # WikiData QID (the gold entity)
    sentence_spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class EntityDescription:
    """Mewsli-X: one candidate entity (``candidate_set_entities.jsonl``, or the entity of a training pair)."""

    entity_id: str  # WikiData QID
    title: str
    description: str
    description_language: str
    description_url: str
    sentence_spans: list[tuple[int, int]] = field(default_factory=list)  # code-point offsets into description


@dataclass
class MentionEntityPair:
    """Mewsli-X fine-tuning pair (``wikipedia_pairs-*.jsonl``): an English Wikipedia mention and its entity."""

    mention: EntityMentionExample
    entity: EntityDescription


Example = (
    ClassificationExample
    | MultipleChoiceExample
    | SpanQAExample
    | TaggingExample
    | BitextExample
    | QASentencePool
    | EntityMentionExample
)


@dataclass
class ReadResult:
    examples: list
    files: dict[str, str]  # path -> sha256
    skipped: dict[str, int] = field(default_factory=dict)  # rule -> count
    raw: object = None  # format-specific raw structure needed by official scorers (e.g. SQuAD 'data')

    def __len__(self) -> int:
        return len(self.examples)


def qa_ids(examples: Sequence, raw: Sequence[dict] | None) -> list[str]:
    """The official question ids of span-QA examples, in example order.

    ``raw`` is the reader's ``ReadResult.raw`` (the file's ``data``, same question order as the
    examples). Without it the guids are the ids (SQuAD, XQuAD, MLQA). A count mismatch or a
    repeated id is an error: a submission keyed by them would silently lose answers.
    """
    if raw is None:
        ids = [e.guid for e in examples]
    else:
        ids = [str(qa["id"]) for art in raw for para in art["paragraphs"] for qa in para.get("qas", [])]
        if len(ids) != len(examples):
            raise ValueError(
                f"qa_ids: the file's data has {len(ids)} questions but there are {len(examples)} "
                "examples; expected the reader's raw data of exactly these examples"
            )
    seen = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"qa_ids: question id {i!r} occurs twice; a submission keyed by id would lose an answer")
        seen.add(i)
    return ids
