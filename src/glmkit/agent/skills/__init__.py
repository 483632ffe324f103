"""Export glmkit tool bundles as agent skill folders (report section 3.2).

A skill is a folder an agent harness (Claude Code, Codex, OpenClaw, GLM's own skills) discovers by
its ``SKILL.md``: YAML front matter with ``name`` and ``description``, then instructions. The
layout follows zai-org/GLM-V's skills (``SKILL.md`` + ``scripts/``)::

    <out>/<skill-name>/SKILL.md
    <out>/<skill-name>/scripts/<tool>.py

``SKILL.md`` is generated from the tools' JSON schemas (an argument table and an example call per
tool). Each script is a small CLI over :func:`run_tool_cli`: it takes the tool's arguments as one
JSON object, input images as ``--image ID=PATH``, runs the glmkit tool, saves image outputs as
PNGs and prints one JSON object. The scripts import glmkit, so it must be installed where the
agent runs them; tools are built with their default constructor arguments.

The package, one idea per module: :mod:`.skill_md` (the ``SKILL.md`` format), :mod:`.examples`
(example calls from schemas), :mod:`.export` (writing skill folders), :mod:`.script` (what a
generated script runs) and :mod:`.cli` (``glmkit tools export-skills``).
"""

from glmkit.agent.skills.cli import main
from glmkit.agent.skills.examples import example_arguments, example_value
from glmkit.agent.skills.export import SkillBundle, export_skills, is_generated_script
from glmkit.agent.skills.script import run_tool_cli, save_new_png
from glmkit.agent.skills.skill_md import (
    MAX_DESCRIPTION,
    MAX_NAME,
    first_sentence,
    read_front_matter,
    render_skill_md,
    validate_skill_name,
)

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_NAME",
    "SkillBundle",
    "example_arguments",
    "example_value",
    "export_skills",
    "first_sentence",
    "is_generated_script",
    "main",
    "read_front_matter",
    "render_skill_md",
    "run_tool_cli",
    "save_new_png",
    "validate_skill_name",
]
