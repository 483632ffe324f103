"""glmkit tools over MCP v2: in-process client and a real stdio subprocess."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from PIL import Image

pytest.importorskip("mcp")
from mcp import Client, StdioServerParameters

from glmkit.agent.mcp_server import (
    INPUT_IMAGES_ARG,
    ToolServer,
    build_server,
    load_image_source,
    main,
    mcp_input_schema,
)
from glmkit.tools.base import ToolError
from tests.agent.toy_tools import toy_tools

REPO = Path(__file__).resolve().parents[2]


def png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode(content) -> Image.Image:
    assert content.type == "image" and content.mime_type == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(content.data)))


def call_all(tool_server: ToolServer, calls: list[tuple[str, dict]]):
    async def go():
        async with Client(tool_server.server) as client:
            listed = await client.list_tools()
            results = [await client.call_tool(name, args) for name, args in calls]
        return listed, results

    return anyio.run(go)


def test_list_tools_serves_the_json_schemas_verbatim():
    tools = toy_tools()
    listed, _ = call_all(ToolServer(tools), [])
    by_name = {t.name: t for t in listed.tools}
    assert list(by_name) == ["echo", "make_image", "image_size"]
    for tool in tools:
        schema = by_name[tool.name].input_schema
        assert schema == mcp_input_schema(tool)
        assert {k: v for k, v in schema["properties"].items() if k != INPUT_IMAGES_ARG} == tool.parameters[
            "properties"
        ]
        assert schema.get("required") == tool.parameters.get("required")
        assert schema["additionalProperties"] is False
        assert by_name[tool.name].description == tool.description


def test_text_image_and_error_results():
    server = ToolServer(toy_tools())
    _, (echo, image, bad, unknown) = call_all(
        server,
        [
            ("echo", {"text": "hi", "times": 2}),
            ("make_image", {"width": 9, "height": 7, "color": "blue"}),
            ("echo", {"text": "hi", "times": 0}),
            ("teleport", {}),
        ],
    )
    assert not echo.is_error and echo.content[0].text == "hi hi"
    assert echo.structured_content == {"image_ids": [], "length": 4}
    assert not image.is_error and "img_0" in image.content[0].text
    picture = decode(image.content[1])
    assert picture.size == (9, 7) and picture.convert("RGB").getpixel((0, 0)) == (0, 0, 255)
    assert bad.is_error and "times" in bad.content[0].text
    assert unknown.is_error and "unknown tool 'teleport'" in unknown.content[0].text
    assert "img_0" in server.context.images  # results stay available to later calls


def test_images_go_in_as_base64_data_urls_or_paths(tmp_path):
    path = tmp_path / "in.png"
    Image.new("RGB", (30, 20)).save(path)
    b64 = png_b64(Image.new("RGB", (11, 5)))
    _, results = call_all(
        ToolServer(toy_tools()),
        [
            ("image_size", {INPUT_IMAGES_ARG: {"a": str(path)}, "image": "a"}),
            ("image_size", {INPUT_IMAGES_ARG: {"b": b64}, "image": "b"}),
            ("image_size", {INPUT_IMAGES_ARG: {"c": "data:image/png;base64," + b64}, "image": "c"}),
            ("image_size", {"image": "a"}),  # loaded earlier, still in the context
            ("image_size", {INPUT_IMAGES_ARG: {"d": str(tmp_path / "missing.png")}, "image": "d"}),
            (
                "image_size",
                {INPUT_IMAGES_ARG: {"e": base64.b64encode(b"not an image").decode()}, "image": "e"},
            ),
        ],
    )
    texts = [r.content[0].text for r in results]
    assert texts[:4] == ["30x20", "11x5", "11x5", "30x20"]
    assert results[4].is_error and "neither an existing image file nor base64" in texts[4]
    assert results[5].is_error and "not a readable image" in texts[5]


def test_load_image_source_errors():
    with pytest.raises(ToolError, match="base64-encoded"):
        load_image_source("data:image/png,rawbytes")


def test_context_keeps_a_bounded_number_of_images():
    server = ToolServer(toy_tools(), max_images=3)
    call_all(server, [("make_image", {"width": 2 + i}) for i in range(5)])
    assert len(server.context.images) == 3
    assert [im.size[0] for im in server.context.images.values()] == [4, 5, 6]


def test_trimmed_image_ids_are_never_reused():
    # Old code issued len(images) as the next id, so after trimming a client holding an old id
    # silently got a newer image under it.
    server = ToolServer(toy_tools(), max_images=3)
    _, results = call_all(
        server,
        [("make_image", {"width": 2 + i}) for i in range(8)] + [("image_size", {"image": "img_0"})],
    )
    made, stale = results[:8], results[8]
    issued = [r.structured_content["image_ids"][0] for r in made]
    assert issued == [f"img_{i}" for i in range(8)]
    assert list(server.context.images) == ["img_5", "img_6", "img_7"]
    # Each surviving id still names the image it was issued for.
    assert [server.context.images[i].size[0] for i in issued[5:]] == [7, 8, 9]
    assert stale.is_error
    assert "'img_0' is no longer available" in stale.content[0].text
    assert "img_5, img_6, img_7" in stale.content[0].text


def test_reserved_argument_name_is_refused():
    from tests.agent.toy_tools import EchoTool

    class Clash(EchoTool):
        name = "clash"
        parameters = {"type": "object", "properties": {INPUT_IMAGES_ARG: {"type": "string"}}}

    with pytest.raises(ValueError, match="reserves"):
        ToolServer([Clash()])


def test_real_crop_image_in_process(tmp_path):
    pytest.importorskip("glmkit.tools.image")
    path = tmp_path / "photo.png"
    image = Image.new("RGB", (200, 100), "white")
    image.paste((255, 0, 0), (100, 50, 200, 100))
    image.save(path)
    server = build_server(["crop_image"])
    _, (result,) = call_all(
        server,
        [
            (
                "crop_image",
                {INPUT_IMAGES_ARG: {"img_0": str(path)}, "image": "img_0", "bbox": [500, 500, 1000, 1000]},
            )
        ],
    )
    assert not result.is_error, result.content[0].text
    crop = decode(result.content[1]).convert("RGB")
    assert crop.size == (100, 50) and crop.getpixel((10, 10)) == (255, 0, 0)


def test_stdio_subprocess_lists_and_calls_a_tool(tmp_path):
    pytest.importorskip("glmkit.tools.image")
    path = tmp_path / "photo.png"
    Image.new("RGB", (128, 64), "green").save(path)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "glmkit.agent.mcp_server", "--import", "glmkit.tools.image", "--tools", "crop_image"],
        env=env,
        cwd=str(tmp_path),
    )

    async def go():
        with anyio.fail_after(300):  # a hung server fails the test instead of blocking the suite
            async with Client(params) as client:
                listed = await client.list_tools()
                result = await client.call_tool(
                    "crop_image",
                    {INPUT_IMAGES_ARG: {"img_0": str(path)}, "image": "img_0", "bbox": [0, 0, 500, 500]},
                )
        return listed, result

    listed, result = anyio.run(go)
    assert [t.name for t in listed.tools] == ["crop_image"]
    assert INPUT_IMAGES_ARG in listed.tools[0].input_schema["properties"]
    assert not result.is_error, result.content[0].text
    assert decode(result.content[1]).size == (64, 32)


def test_main_list_and_bad_tool_names(capsys):
    pytest.importorskip("glmkit.tools.image")
    assert main(["--import", "glmkit.tools.image", "--tools", "crop_image", "--list"]) == 0
    assert capsys.readouterr().out.split() == ["crop_image"]
    assert main(["--import", "glmkit.tools.image", "--tools", "crop_imag"]) == 2
    assert "crop_image" in capsys.readouterr().err


def test_the_server_loads_installed_plugins_itself(monkeypatch, capsys):
    """``python -m glmkit.agent.mcp_server`` loads plugins as ``glmkit tools serve`` does (a
    plugin may register tools), and names a plugin that failed to import."""
    pytest.importorskip("glmkit.tools.image")
    import glmkit.registry as registry

    calls: list[int] = []

    def load_plugins() -> registry.ImportReport:
        calls.append(1)
        return registry.ImportReport(failed={"broken (example 1.0): broken:tools": "ImportError: nope"})

    monkeypatch.setattr(registry, "load_plugins", load_plugins)
    assert main(["--import", "glmkit.tools.image", "--tools", "crop_image", "--list"]) == 0
    out, err = capsys.readouterr()
    assert calls == [1] and out.split() == ["crop_image"]
    assert "could not import broken (example 1.0): broken:tools: ImportError: nope" in err


def test_python_dash_m_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "glmkit.agent.mcp_server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "--tools" in out.stdout


def test_a_slow_fetch_does_not_hold_up_another_call():
    """A server that sends its headers one byte at a time: read_webpage gives up at its total limit,
    and a crop sent meanwhile to the same MCP server answers at once."""
    from glmkit.tools.base import ToolContext
    from tests.tools.conftest import SlowHeadersServer

    slow = SlowHeadersServer(interval=0.1, duration=10.0)
    context = ToolContext(network_policy=slow.policy(read_timeout=2.0, total_timeout=2.0))
    tool_server = build_server(["read_webpage", "crop_image"], context=context)
    picture = png_b64(Image.new("RGB", (64, 64), "red"))
    timings: dict[str, float] = {}

    async def go():
        async with Client(tool_server.server) as client:
            results = {}

            async def fetch_page():
                start = anyio.current_time()
                results["page"] = await client.call_tool("read_webpage", {"url": slow.url()})
                timings["page"] = anyio.current_time() - start

            async with anyio.create_task_group() as group:
                group.start_soon(fetch_page)
                await anyio.sleep(0.3)
                start = anyio.current_time()
                results["crop"] = await client.call_tool(
                    "crop_image",
                    {"input_images": {"img_0": picture}, "image": "img_0", "bbox": [0, 0, 500, 500]},
                )
                timings["crop"] = anyio.current_time() - start
        return results

    try:
        results = anyio.run(go)
    finally:
        slow.close()
    assert not results["crop"].is_error and timings["crop"] < 1.0
    assert results["page"].is_error and "took longer than 2 s in total" in results["page"].content[0].text
    assert timings["page"] < 4.0
