"""Export of tool bundles as agent skill folders."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from glmkit.agent.skills import (
    SkillBundle,
    example_arguments,
    export_skills,
    first_sentence,
    is_generated_script,
    main,
    read_front_matter,
    render_skill_md,
    run_tool_cli,
    validate_skill_name,
)
from glmkit.tools.base import Tool, ToolContext, ToolError, ToolResult
from tests.agent.toy_tools import EchoTool, ImageSizeTool, toy_tools

REPO = Path(__file__).resolve().parents[2]


def run_script(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


def test_skill_md_front_matter_and_tool_sections(tmp_path):
    bundle = SkillBundle("toy-kit", toy_tools(), description="Toy tools: echo: text, and images.")
    (folder,) = export_skills(tmp_path, [bundle])
    assert folder == tmp_path / "toy-kit"
    front = read_front_matter(folder / "SKILL.md")
    assert front == {"name": "toy-kit", "description": "Toy tools: echo: text, and images."}
    text = (folder / "SKILL.md").read_text()
    for tool in toy_tools():
        assert f"### {tool.name}" in text and tool.description in text
        assert (folder / "scripts" / f"{tool.name}.py").stat().st_mode & 0o111
    assert "| `times` | integer | no | how often Default: 1. |" in text
    assert "| `text` | string | yes | what to repeat |" in text
    assert 'python scripts/echo.py \'{"text": "<text>"}\'' in text
    assert 'python scripts/image_size.py \'{"image": "img_0"}\' --image img_0=path/to/image.png' in text


def test_default_description_names_the_tools(tmp_path):
    (folder,) = export_skills(tmp_path, {"echo-only": [EchoTool()]})
    description = read_front_matter(folder / "SKILL.md")["description"]
    assert description.startswith("glmkit tools echo.") and "Repeat a text" in description


def test_example_arguments_follow_the_schema():
    pytest.importorskip("glmkit.tools.image")
    from glmkit.tools import get_tool

    crop = get_tool("crop_image")
    args = example_arguments(crop)
    assert args == {"image": "img_0", "bbox": [100, 200, 300, 400]}
    assert crop.validate(args) == args
    assert example_arguments(EchoTool()) == {"text": "<text>"}


def _photo(tmp_path, colour: tuple[int, int, int], box: tuple[int, int, int, int]):
    """A 200x100 white PNG with one coloured rectangle, as an agent's input image."""
    photo = tmp_path / "photo.png"
    image = Image.new("RGB", (200, 100), "white")
    image.paste(colour, box)
    image.save(photo)
    return photo


def test_real_crop_image_script_runs_as_a_subprocess(tmp_path):
    pytest.importorskip("glmkit.tools.image")
    (folder,) = export_skills(tmp_path / "skills", {"glmkit-vision": ["crop_image"]})
    photo = _photo(tmp_path, (0, 0, 255), (0, 0, 100, 50))
    script = folder / "scripts" / "crop_image.py"
    args = json.dumps({"image": "img_0", "bbox": [0, 0, 500, 500]})
    out = run_script(
        script, args, "--image", f"img_0={photo}", "--out-dir", str(tmp_path / "out"), cwd=folder
    )
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["ok"] is True and payload["error"] is None
    (saved,) = payload["images"]
    crop = Image.open(saved["path"]).convert("RGB")
    assert saved["id"] == "img_1" and crop.size == (100, 50) and crop.getpixel((5, 5)) == (0, 0, 255)

    bad = run_script(script, json.dumps({"image": "img_9", "bbox": [0, 0, 1, 1]}), cwd=folder)
    assert bad.returncode == 1
    assert "unknown image id 'img_9'" in json.loads(bad.stdout)["error"]


def test_run_tool_cli_usage_errors(capsys, tmp_path):
    pytest.importorskip("glmkit.tools.image")
    assert run_tool_cli("crop_image", ["{not json"]) == 2
    assert "not valid JSON" in json.loads(capsys.readouterr().out)["error"]
    assert run_tool_cli("crop_image", ["{}", "--image", "nopath"]) == 2
    assert "ID=PATH" in json.loads(capsys.readouterr().out)["error"]
    assert run_tool_cli("no_such_tool", ["{}"]) == 2
    assert "cannot load tool" in json.loads(capsys.readouterr().out)["error"]
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"image": "img_0", "bbox": [0, 0, 10, 10]}))
    assert run_tool_cli("crop_image", [f"@{args_file}"]) == 1  # img_0 was never loaded
    assert "unknown image id" in json.loads(capsys.readouterr().out)["error"]


@pytest.mark.parametrize("name", ["Bad_Name", "-lead", "double--hyphen", "a" * 65, ""])
def test_invalid_skill_names_are_refused(name, tmp_path):
    with pytest.raises(ValueError, match="invalid skill name"):
        validate_skill_name(name)
    with pytest.raises(ValueError, match="invalid skill name"):
        export_skills(tmp_path, {name: [EchoTool()]})
    assert not any(tmp_path.iterdir())  # nothing written


def test_main_exports_bundles(tmp_path, capsys):
    pytest.importorskip("glmkit.tools.image")
    out = tmp_path / "skills"
    assert (
        main([str(out), "--bundle", "zoom=crop_image,draw_image_bounding_boxes", "--bundle", "code=python"])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["code", "zoom"]
    assert sorted(p.name for p in (out / "zoom" / "scripts").iterdir()) == [
        "crop_image.py",
        "draw_image_bounding_boxes.py",
    ]
    assert main([str(out), "--bundle", "broken"]) == 2
    assert "NAME=TOOL" in capsys.readouterr().err
    assert main([str(out), "--bundle", "x=crop_imag"]) == 2
    assert "crop_image" in capsys.readouterr().err


def test_render_skill_md_is_valid_yaml_even_with_colons_and_quotes():
    text = render_skill_md("q", 'Says: "hi" #1', [EchoTool()])
    import yaml

    assert yaml.safe_load(text.split("---")[1]) == {"name": "q", "description": 'Says: "hi" #1'}


# --- regression tests of the review findings ---------------------------------------------------------


def builtin_tool_names() -> list[str]:
    """glmkit's own registered tools (not ones other test modules may register)."""
    try:
        import glmkit.tools  # noqa: F401  (registers the built-in tools)
    except ImportError:
        return []
    from glmkit.tools.base import TOOLS

    return [n for n in TOOLS.names() if TOOLS.get(n).__module__.startswith("glmkit.")]


def test_repeated_runs_keep_every_output_image(tmp_path):
    pytest.importorskip("glmkit.tools.image")
    (folder,) = export_skills(tmp_path / "skills", {"zoom": ["crop_image"]})
    photo = _photo(tmp_path, (255, 0, 0), (0, 0, 100, 100))
    script = folder / "scripts" / "crop_image.py"
    paths = []
    for bbox in ([0, 0, 500, 1000], [500, 0, 1000, 1000]):  # the red half, then the white half
        out = run_script(
            script, json.dumps({"image": "img_0", "bbox": bbox}), "--image", f"img_0={photo}", cwd=tmp_path
        )
        assert out.returncode == 0, out.stderr
        (saved,) = json.loads(out.stdout)["images"]
        assert saved["id"] == "img_1"  # every run starts afresh, so the id repeats ...
        paths.append(tmp_path / saved["path"])
    assert paths[0] != paths[1]  # ... but the file does not
    assert Image.open(paths[0]).convert("RGB").getpixel((5, 5)) == (255, 0, 0)
    assert Image.open(paths[1]).convert("RGB").getpixel((5, 5)) == (255, 255, 255)


def write_gif(path: Path, seconds: int = 3) -> None:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    frames = [Image.new("RGB", (48, 32), colors[i % len(colors)]) for i in range(seconds)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=1000, loop=0)


def test_video_tracking_script_reads_an_animated_file_in_the_current_folder(tmp_path):
    pytest.importorskip("glmkit.tools.video")
    (folder,) = export_skills(tmp_path / "skills", {"video": ["draw_video_objects_tracking"]})
    script = folder / "scripts" / "draw_video_objects_tracking.py"
    work = tmp_path / "work"
    work.mkdir()
    write_gif(work / "clip.gif", seconds=3)
    tracks = [
        {
            "label": "car",
            "boxes": [{"second": 0, "bbox": [0, 0, 500, 500]}, {"second": 2, "bbox": [500, 500, 1000, 1000]}],
        }
    ]

    out = run_script(script, json.dumps({"video": "clip.gif", "tracks": tracks}), cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr
    payload = json.loads(out.stdout)
    assert payload["ok"] is True and payload["data"]["frame_indices"] == [0, 1, 2]
    assert payload["data"]["seconds"] == [0, 2] and len(payload["images"]) == 2
    first = Image.open(work / payload["images"][0]["path"]).convert("RGB")
    assert first.size == (48, 32) and first.getpixel((40, 28)) == (255, 0, 0)  # the clip's first frame
    (gif,) = payload["files"]
    assert Image.open(work / gif).n_frames == 3

    absolute = run_script(script, json.dumps({"video": str(work / "clip.gif"), "tracks": tracks}), cwd=work)
    assert absolute.returncode == 0, absolute.stdout

    # still only the current folder and the output folder: a file elsewhere is refused
    outside = tmp_path / "elsewhere.gif"
    write_gif(outside)
    for video in (str(outside), "../elsewhere.gif"):
        refused = run_script(script, json.dumps({"video": video, "tracks": tracks}), cwd=work)
        assert refused.returncode == 1
        assert "allowed directories" in json.loads(refused.stdout)["error"]


def skill_md_examples(text: str) -> dict[str, list[str]]:
    """Tool name -> argv of the example command in a SKILL.md."""
    examples = {}
    for line in text.splitlines():
        if line.startswith("    python scripts/"):
            argv = shlex.split(line.strip())
            examples[Path(argv[1]).stem] = argv[1:]
    return examples


def has_placeholder(value: Any) -> bool:
    """True when a ``<placeholder>`` string occurs anywhere in ``value``."""
    if isinstance(value, str):
        return value.startswith("<") and value.endswith(">")
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, list) and any(has_placeholder(v) for v in value)


@pytest.fixture(scope="module")
def exported_builtins(tmp_path_factory):
    pytest.importorskip("glmkit.tools.search")
    from glmkit.tools.search import build_index

    root = tmp_path_factory.mktemp("examples")
    (folder,) = export_skills(root / "skills", {"glmkit-tools": builtin_tool_names()})
    Image.new("RGB", (80, 60), (10, 200, 30)).save(root / "doc.png")
    index = build_index(
        root / "index",
        documents=[{"title": "t", "url": "u", "text": "query", "image": str(root / "doc.png")}],
    )
    return folder, skill_md_examples((folder / "SKILL.md").read_text()), index


@pytest.mark.parametrize("name", builtin_tool_names())
def test_every_skill_md_example_is_valid_and_the_concrete_ones_run(name, exported_builtins, tmp_path):
    from glmkit.tools import get_tool

    folder, examples, index = exported_builtins
    argv = examples[name]
    arguments = json.loads(argv[1])
    get_tool(name).validate(arguments)  # schema-valid, placeholders included
    if has_placeholder(arguments):
        pytest.skip(f"{name}: the example has <placeholders> for the agent to fill in")
    fresh = tmp_path / "fresh"  # a fresh copy of the skill folder, as an agent would find it
    (fresh / "scripts").mkdir(parents=True)
    (fresh / "scripts" / f"{name}.py").write_text((folder / "scripts" / f"{name}.py").read_text())
    (fresh / "path" / "to").mkdir(parents=True)
    Image.new("RGB", (120, 90), (200, 180, 40)).save(fresh / "path" / "to" / "image.png")
    env = {"GLMKIT_SEARCH_INDEX": str(index)}
    out = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=fresh,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), **env},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["ok"] is True


def test_geometry_example_draws_a_line_with_two_points():
    pytest.importorskip("glmkit.tools.drawing")
    from glmkit.tools import get_tool

    args = example_arguments(get_tool("draw_image_geometry"))
    (shape,) = args["shapes"]
    assert shape["type"] == "line" and len(shape["points"]) == 2 and shape["points"][0] != shape["points"][1]


class NeedsTriangleTool(Tool):
    """The schema allows one point; ``run`` wants three (a check jsonschema cannot express here)."""

    name = "triangle"
    description = "Measure a triangle."
    parameters = {
        "type": "object",
        "properties": {
            "image": {"type": "string", "description": "image id"},
            "points": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            },
        },
        "required": ["image", "points"],
        "additionalProperties": False,
    }

    def run(self, context: ToolContext, image: str, points: list[Any], **_: Any) -> ToolResult:
        context.get_image(image)
        if len(points) < 3:
            raise ToolError(f"a triangle needs 3 points, got {len(points)}")
        return ToolResult(text="ok")


class PatternTool(Tool):
    """A schema the generator cannot satisfy (a pattern without ``examples``)."""

    name = "patterned"
    description = "Look up a code."
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
        "required": ["code"],
        "additionalProperties": False,
    }

    def run(self, context: ToolContext, code: str, **_: Any) -> ToolResult:
        return ToolResult(text=code)


def test_examples_are_checked_against_the_tool_at_export(tmp_path):
    tool = NeedsTriangleTool()
    assert len(example_arguments(tool)["points"]) == 2  # schema only
    assert len(example_arguments(tool, run=True)["points"]) == 3  # the tool's own check picks a candidate
    (folder,) = export_skills(tmp_path, {"tri": [tool]})
    line = skill_md_examples((folder / "SKILL.md").read_text())["triangle"]
    assert len(json.loads(line[1])["points"]) == 3
    with pytest.raises(ValueError, match="'patterned'.*code.*examples"):
        export_skills(tmp_path / "bad", {"bad": [PatternTool()]})
    assert not (tmp_path / "bad").exists()  # nothing written


def test_reexport_removes_stale_generated_scripts_only(tmp_path):
    export_skills(tmp_path, {"kit": [EchoTool(), ImageSizeTool()]})
    scripts = tmp_path / "kit" / "scripts"
    own = scripts / "my_helper.py"
    own.write_text("# the agent's own script; mentions run_tool_cli but glmkit did not write it\n")
    legacy = scripts / "old_tool.py"  # the layout of an export made before the header line existed
    legacy.write_text(
        '#!/usr/bin/env python3\n"""Run the glmkit tool \'old_tool\' (skill \'kit\'); generated by glmkit.agent.skills.\n"""\n\n'
        "import sys\n\nfrom glmkit.agent.skills import run_tool_cli\n"
    )
    assert is_generated_script(scripts / "echo.py") and is_generated_script(legacy)
    assert not is_generated_script(own)

    export_skills(tmp_path, {"kit": [EchoTool()]})
    assert sorted(p.name for p in scripts.iterdir()) == ["echo.py", "my_helper.py"]
    assert "image_size" not in (tmp_path / "kit" / "SKILL.md").read_text()


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Load an image, e.g. a chart. Private addresses are refused.", "Load an image, e.g. a chart."),
        ("Read a file (e.g. GIF) in a folder. Then draw.", "Read a file (e.g. GIF) in a folder."),
        ("Colours, i.e. RGB triples. Next.", "Colours, i.e. RGB triples."),
        ("Lists, etc. and more. Second one.", "Lists, etc. and more."),
        ("Version 3.14 is used. Next.", "Version 3.14 is used."),
        ("Is it? Yes.", "Is it?"),
        ("No full stop", "No full stop."),
    ],
)
def test_first_sentence_keeps_abbreviations(text, first):
    assert first_sentence(text) == first


def test_default_description_keeps_the_whole_first_sentence(tmp_path):
    pytest.importorskip("glmkit.tools.browser")
    (folder,) = export_skills(tmp_path, {"web": ["load_image_from_url"]}, run_examples=False)
    description = read_front_matter(folder / "SKILL.md")["description"]
    assert "e.g. an image found by read_webpage or search." in description
    assert "Private and local addresses" not in description
