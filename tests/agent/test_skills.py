"""Export of tool bundles as agent skill folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from glmkit.agent.skills import (
    SkillBundle,
    example_arguments,
    export_skills,
    main,
    read_front_matter,
    render_skill_md,
    run_tool_cli,
    validate_skill_name,
)
from tests.agent.toy_tools import EchoTool, toy_tools

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


def test_real_crop_image_script_runs_as_a_subprocess(tmp_path):
    pytest.importorskip("glmkit.tools.image")
    (folder,) = export_skills(tmp_path / "skills", {"glmkit-vision": ["crop_image"]})
    photo = tmp_path / "photo.png"
    image = Image.new("RGB", (200, 100), "white")
    image.paste((0, 0, 255), (0, 0, 100, 50))
    image.save(photo)
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
