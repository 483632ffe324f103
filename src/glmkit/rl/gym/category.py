"""Task categories: seeded generators of scored samples, each naming the verifiers that reward it.

GLM-5V-Turbo (report section 2.3) trains one policy jointly on 30+ task categories. A category
here is a registered component (registry ``task_categories``, base :class:`TaskCategory`) that

- draws sample ``index`` as a pure function of ``(seed, category name, index)``
  (:meth:`TaskCategory.draw`): images, question, reference answer, metadata and any files a
  verifier reads (a reference page);
- turns it into a :class:`~glmkit.scoring.Sample` (:meth:`TaskCategory.sample`) whose ``category``
  is the category's name (what the reward system routes by) and whose ``source`` is the data-source
  tag (the category's name unless ``source=`` says otherwise; per-source rewards and pass@k read
  it). Images and files are written under the category's data folder, so the sample is complete on
  its own (``sample.load_images()``, ``sample.to_row()``);
- names its verifiers as eval metric specs (:meth:`TaskCategory.verifiers`, ``class_path`` /
  ``init_args`` plus the score key to read) and how they combine (:meth:`TaskCategory.rewards`),
  so :func:`glmkit.rl.gym.rewards.build_reward_system` can build the reward system's route;
- writes an answer that earns full marks (:meth:`TaskCategory.oracle`), for tests and smoke runs,
  and, for a multi-step task with a scripted solution, the whole episode's replies
  (:meth:`TaskCategory.oracle_trajectory`: tool calls first, the answer last), which the RL stage's
  SFT warm start trains on;
- for multi-step tasks, gives each episode its tools (:meth:`TaskCategory.tools`) and a turn limit
  (``max_turns``), which :class:`~glmkit.rl.gym.environment.TaskEnvironment` runs through the
  agent's turn logic.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from glmkit.registry import declare
from glmkit.scoring import Sample

if TYPE_CHECKING:
    from PIL import Image

    from glmkit.agent.formats import ToolCallFormat
    from glmkit.rl.gym.source import TaskSource
    from glmkit.scoring import Verifier
    from glmkit.tools.base import Tool


@dataclass(frozen=True)
class VerifierSpec:
    """One verifier of a category: an eval metric as ``class_path`` / ``init_args``, and the score
    the reward reads (``None``: the metric's headline; ``"grounding.iou"``: a sub-score).

    Args:
        class_path: a metric's registered name (registry ``metrics``) or import path; the built-in
            categories use registered names, which stay valid when a metric moves between modules.
        init_args: its constructor arguments.
        score_key: the score to read as the reward, when not the headline.
    """

    class_path: str
    init_args: Mapping[str, Any] = field(default_factory=dict)
    score_key: str | None = None

    def spec(self) -> dict[str, Any]:
        """The ``{"class_path": ..., "init_args": {...}}`` mapping recipes and specs use."""
        return {"class_path": self.class_path, "init_args": dict(self.init_args)}

    def build(self, where: str = "verifier spec") -> Verifier:
        """Instantiate the metric (names resolve in the ``metrics`` registry)."""
        from glmkit.config import instantiate

        return instantiate(self.spec(), "metrics", where=where)


@dataclass
class Draft:
    """What a category draws for one index, before it becomes a :class:`~glmkit.scoring.Sample`.

    Args:
        question: the prompt text the policy reads (answer-format instructions included).
        answer: the reference answer, in the shape the category's verifiers read.
        images: the question's images (saved as ``images/<id>_<k>.png``).
        metadata: anything else the verifiers, tools or scripted policies read (JSON-able).
        files: ``{relative path: text}`` written under the sample's root (a reference page).
    """

    question: str
    answer: Any
    images: list[Image.Image] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


class TaskCategory(ABC):
    """Base of task categories (module docstring). Subclasses set ``name`` and implement
    :meth:`draw`, :meth:`verifiers` and :meth:`oracle`; multi-step ones also :meth:`tools`.

    Args:
        seed: selects the stream; sample ``index`` is a pure function of ``(seed, name, index)``.
        size: the number of distinct indices (the length of the category's record source).
        source: the data-source tag of its samples (default: the category's name).
        data_dir: where images and files are written (a folder per source inside it); ``None``: a
            fresh temporary folder, made on first use.
    """

    name: ClassVar[str]
    max_turns: int = 1
    """Policy replies per episode; 1 for single-step tasks (prompt -> response -> reward)."""

    def __init__(
        self, seed: int = 0, size: int = 100_000, source: str | None = None, data_dir: str | None = None
    ) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{self.name}: seed must be an int >= 0, got {seed!r}")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"{self.name}: size must be an int >= 1, got {size!r}")
        if source is not None and (not isinstance(source, str) or not source or "/" in source):
            raise ValueError(
                f"{self.name}: source must be a non-empty name without '/', got {source!r} "
                "(it becomes a folder name and a metric key)"
            )
        self.seed = seed
        self.size = size
        self.source = source or self.name
        self.data_dir = Path(data_dir) if data_dir is not None else None

    # -- what a category implements ---------------------------------------------------------------

    @abstractmethod
    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        """Draw sample ``index`` using only ``rng`` (already seeded from ``(seed, name, index)``)."""

    @abstractmethod
    def verifiers(self) -> dict[str, VerifierSpec]:
        """The category's verifiers by name (the reward system's verifier names)."""

    @abstractmethod
    def oracle(self, sample: Sample) -> str:
        """A response that earns full marks from :meth:`verifiers` (reached through the tools for a
        multi-step task)."""

    def rewards(self) -> dict[str, Any]:
        """The reward route: ``{"verifiers": [...], "aggregator": spec}`` as
        :class:`~glmkit.rl.rewards.CategoryRewards` reads it. Default: the mean of the verifiers
        (a weighted sum with weights 1/n), so a perfect answer earns 1."""
        names = list(self.verifiers())
        weights = {n: 1.0 / len(names) for n in names}
        return {
            "verifiers": names,
            "aggregator": {
                "class_path": "weighted_sum",
                "init_args": {"weights": weights},
            },
        }

    def tools(self, sample: Sample) -> dict[str, Tool]:
        """Fresh tool instances for one episode on ``sample``, by name (none: single-step)."""
        return {}

    def oracle_trajectory(
        self, sample: Sample, tool_format: str | ToolCallFormat = "hermes"
    ) -> list[str | dict[str, Any]] | None:
        """The replies of a full-marks episode on ``sample`` (a multi-step task): the tool calls,
        written in ``tool_format`` (:func:`tool_call_reply`), then the final answer
        (:meth:`oracle`). None (the default): the category has no scripted solution."""
        return None

    # -- shared machinery -------------------------------------------------------------------------

    @property
    def multi_step(self) -> bool:
        """True when an episode may take more than one policy reply."""
        return self.max_turns > 1

    def rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index``; the category's name keeps streams of categories apart."""
        return np.random.default_rng([self.seed, zlib.crc32(self.name.encode()), self._check(index)])

    def root(self) -> Path:
        """The folder this category's samples are written to (``<data_dir>/<source>``)."""
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"glmkit-gym-{self.name}-"))
        path = self.data_dir / self.source
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sample_id(self, index: int) -> str:
        """``"<source>-<seed>-<index>"``."""
        return f"{self.source}-{self.seed}-{self._check(index):06d}"

    def sample(self, index: int) -> Sample:
        """Sample ``index`` (its images and files written under :meth:`root`)."""
        return self.record(index)["sample"]

    def record(self, index: int) -> dict[str, Any]:
        """``{"sample": Sample, "images": [PIL images]}``: the record of :class:`TaskSource`."""
        draft = self.draw(self.rng(index), index)
        sample_id = self.sample_id(index)
        root = self.root()
        paths = []
        for k, image in enumerate(draft.images):
            rel = Path("images") / f"{sample_id}_{k}.png"
            _write_atomic(root / rel, lambda p, image=image: image.save(p, format="PNG"))
            paths.append(root / rel)
        for rel_name, text in draft.files.items():
            rel = Path(rel_name)
            if rel.is_absolute() or ".." in rel.parts:
                raise ValueError(
                    f"{self.name}: file {rel_name!r} must be a relative path inside the sample root"
                )
            _write_atomic(root / rel, lambda p, text=text: Path(p).write_text(text, encoding="utf-8"))
        metadata = dict(draft.metadata)
        if draft.images:
            metadata.setdefault("image_size", list(draft.images[0].size))
        metadata.update({"seed": self.seed, "index": int(index)})
        sample = Sample(
            id=sample_id,
            question=draft.question,
            answer=draft.answer,
            images=paths,
            category=self.name,
            metadata=metadata,
            root=root,
            source=self.source,
        )
        return {"sample": sample, "images": list(draft.images)}

    def as_source(self) -> TaskSource:
        """This category as a record source (``read(index) -> record``) for :class:`~glmkit.data.Mixture`."""
        from glmkit.rl.gym.source import TaskSource

        return TaskSource(self)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (a browser that renders screenshots)."""

    def describe(self) -> dict[str, Any]:
        """Settings recorded beside a run."""
        return {
            "name": self.name,
            "source": self.source,
            "seed": self.seed,
            "size": self.size,
            "max_turns": self.max_turns,
            "verifiers": {n: {**s.spec(), "score_key": s.score_key} for n, s in self.verifiers().items()},
        }

    def _check(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.size:
            raise IndexError(f"{self.name}: index {index!r} out of range [0, {self.size})")
        return int(index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, size={self.size}, source={self.source!r})"


def tool_call_reply(
    tool_format: str | ToolCallFormat, name: str, arguments: Mapping[str, Any], content: str = ""
) -> str | dict[str, Any]:
    """A reply that calls tool ``name`` with ``arguments`` after ``content``, as a policy writes it in
    ``tool_format``: the text for a text format (``hermes``, ``glm45``), else the assistant message
    with native ``tool_calls``."""
    from glmkit.agent.formats import ToolCall, get_tool_call_format

    message = get_tool_call_format(tool_format).render_message([ToolCall(name, dict(arguments))], content)
    text = message.get("content")
    return text if isinstance(text, str) and not message.get("tool_calls") else message


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder and rename it into place, so a reader (a
    data-loader worker drawing the same index) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Declared after TaskCategory: every member is a TaskCategory subclass.
TASK_CATEGORIES = declare(
    "task_categories",
    "RL gym task categories: seeded samples with their verifiers (counting, grounding, GUI, ...)",
    base=TaskCategory,
)
