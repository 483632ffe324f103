"""HTML-to-markdown converters compared on real manuals: fidelity (headings, lists, code, text) and time.

The corpus is the HTML manuals Debian packages ship (``libxml2-doc``, ``libxslt1-dev``'s gtk-doc API
pages, ``bash-doc``, ``sqlite3-doc``, ``python-lxml-doc``; install them with apt). Every page is served
on a loopback HTTP server and fetched once through glmkit's own ``fetch`` (the path ``read_webpage``
takes), then each converter turns the same bytes into markdown:

  glmkit-lxml         glmkit.tools.webpage.html_to_markdown with lxml's parser (the default when installed)
  glmkit-html.parser  the same renderer over Python's html.parser (made linear; the fallback)
  markdownify         markdownify 1.x over BeautifulSoup + lxml (ATX headings, scripts/styles stripped)
  trafilatura         trafilatura 2.x main-content extraction, markdown output, links/images/tables kept
  html2text           html2text (GPL-3.0: compared here only, never imported by glmkit)

Fidelity is measured against the page's own DOM (parsed by lxml; scripts, styles and hidden
elements removed): the share of its headings (h1-h6) and list items (li) that come out as markdown
headings and list items, the share of its code lines (``pre`` text, stripped, non-empty) found as
output lines (a markdown quote's ``>`` aside), and word recall (multiset overlap of the visible words, so dropped navigation costs a
little and a dropped main text costs a lot). Time is the median and the total per converter, the
converters taking turns on each page in a rotating order so that load drifts hit all alike; the
last rows time a hostile page (``<br>`` x N then ``</i>`` x N), which is quadratic for bs4's stock
``html.parser`` builder.

Example::

    python benchmarks/webpage_converters.py --per-package 40
"""

from __future__ import annotations

import argparse
import collections
import functools
import http.server
import re
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

from glmkit.tools.net import NetworkPolicy, fetch
from glmkit.tools.webpage import html_to_markdown

warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)

DOC_ROOT = Path("/usr/share/doc")
PACKAGES = {
    "libxml2-doc": "libxml2/html",
    "libxslt1-dev": "libxslt1-dev/gtk-doc/html",
    "bash-doc": "bash",
    "sqlite3-doc": "sqlite3",
    "python-lxml-doc": "python-lxml/html",
}
HEADING = re.compile(r"^ {0,3}#{1,6} \S", re.M)
LIST_ITEM = re.compile(r"^\s*(?:[-+*]|\d+[.)]) (?!\* \*)\S", re.M)  # not html2text's '* * *' rule
WORD = re.compile(r"\w+", re.U)


def corpus(per_package: int) -> list[tuple[str, Path]]:
    """Up to ``per_package`` pages of each installed package, spread evenly over its sorted files."""
    pages = []
    for package, sub in PACKAGES.items():
        files = sorted((DOC_ROOT / sub).rglob("*.html"))
        step = max(1, len(files) // per_package) if files else 1
        pages += [(package, f) for f in files[::step][:per_package]]
    return pages


def converters() -> dict[str, Callable[[bytes, str], str]]:
    """The converters that are installed, by row name."""
    out: dict[str, Callable[[bytes, str], str]] = {
        "glmkit-lxml": lambda raw, url: html_to_markdown(raw, url, parser="lxml", time_limit=None).markdown,
        "glmkit-html.parser": lambda raw, url: (
            html_to_markdown(raw, url, parser="html.parser", time_limit=None).markdown
        ),
    }
    try:
        import markdownify

        def run_markdownify(raw: bytes, url: str) -> str:
            soup = BeautifulSoup(raw, "lxml")
            return markdownify.MarkdownConverter(heading_style="ATX", strip=["script", "style"]).convert_soup(
                soup
            )

        out["markdownify"] = run_markdownify
    except ImportError:
        pass
    try:
        import trafilatura

        out["trafilatura"] = lambda raw, url: (
            trafilatura.extract(
                raw,
                url=url,
                output_format="markdown",
                include_links=True,
                include_images=True,
                include_tables=True,
                include_formatting=True,
                favor_recall=True,
            )
            or ""
        )
    except ImportError:
        pass
    try:
        import html2text

        def run_html2text(raw: bytes, url: str) -> str:
            h = html2text.HTML2Text(baseurl=url)
            h.body_width = 0
            return h.handle(raw.decode("utf-8", "replace"))

        out["html2text"] = run_html2text
    except ImportError:
        pass
    return out


def truth(raw: bytes) -> dict[str, object]:
    """What a faithful conversion keeps, read from the DOM without scripts, styles and hidden parts."""
    soup = BeautifulSoup(raw, "lxml")
    for node in soup.find_all(["script", "style", "noscript", "template", "head"]):
        node.decompose()
    for node in soup.find_all(attrs={"hidden": True}):
        node.decompose()
    code_lines = [
        line.strip() for pre in soup.find_all("pre") for line in pre.get_text().split("\n") if line.strip()
    ]
    return {
        "headings": len(soup.find_all(re.compile(r"^h[1-6]$"))),
        "items": len(soup.find_all("li")),
        "code": code_lines,
        "words": collections.Counter(WORD.findall(soup.get_text(" ").lower())),
    }


def score(markdown: str, ref: dict[str, object]) -> dict[str, float]:
    """Counts found in ``markdown`` (capped at the truth) and the truth, for summing over pages."""
    lines = set()
    for line in markdown.split("\n"):
        line = line.strip()
        lines.add(line.strip("`").strip())
        lines.add(re.sub(r"^(?:> ?)+", "", line).strip("`").strip())  # code inside a quote
    code = ref["code"]
    words = collections.Counter(WORD.findall(markdown.lower()))
    ref_words = ref["words"]
    return {
        "headings": min(len(HEADING.findall(markdown)), ref["headings"]),
        "headings_ref": ref["headings"],
        "items": min(len(LIST_ITEM.findall(markdown)), ref["items"]),
        "items_ref": ref["items"],
        "code": sum(line in lines for line in code),
        "code_ref": len(code),
        "words": sum(min(n, words[w]) for w, n in ref_words.items()),
        "words_ref": sum(ref_words.values()),
    }


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    """A loopback server for ``root`` (quiet)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--per-package", type=int, default=40, help="pages per package")
    parser.add_argument("--hostile", type=int, nargs="*", default=[10_000, 20_000, 80_000])
    parser.add_argument(
        "--hostile-limit", type=float, default=60.0, help="skip larger hostile pages past this"
    )
    args = parser.parse_args()

    pages = corpus(args.per_package)
    if not pages:
        raise SystemExit(
            "no manuals found: apt-get install libxml2-doc libxslt1-dev bash-doc sqlite3-doc python-lxml-doc"
        )
    server, port = serve(DOC_ROOT)
    policy = NetworkPolicy(allow_endpoints=frozenset({("127.0.0.1", port)}), max_bytes=20 * 1024 * 1024)
    fetched = []
    for package, path in pages:
        url = f"http://127.0.0.1:{port}/{path.relative_to(DOC_ROOT)}"
        fetched.append((package, url, fetch(url, policy).content))
    server.shutdown()
    total_bytes = sum(len(raw) for _, _, raw in fetched)
    print(
        f"corpus: {len(fetched)} pages, {total_bytes / 1e6:.1f} MB, from "
        + ", ".join(f"{p} ({sum(q == p for q, _, _ in fetched)})" for p in PACKAGES)
    )
    refs = [truth(raw) for _, _, raw in fetched]
    table = converters()
    sums: dict[str, collections.Counter[str]] = {name: collections.Counter() for name in table}
    seconds: dict[str, list[float]] = {name: [] for name in table}
    failures = dict.fromkeys(table, 0)
    names = list(table)
    # Converters take turns on each page, in a rotating order, so drifts in machine load hit all alike.
    for index, ((_, url, raw), ref) in enumerate(zip(fetched, refs, strict=True)):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            start = time.perf_counter()
            try:
                markdown = table[name](raw, url)
            except Exception:
                failures[name] += 1
                markdown = ""
            seconds[name].append(time.perf_counter() - start)
            sums[name].update(score(markdown, ref))
    rows = [(name, sums[name], seconds[name], failures[name]) for name in names]

    print(
        "\n| converter | headings | list items | code lines | word recall | median ms/page | total s | failures |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, sums, seconds, failures in rows:

        def pct(key: str, sums: collections.Counter[str] = sums) -> str:
            return f"{100 * sums[key] / max(1, sums[key + '_ref']):.1f}%"

        print(
            f"| {name} | {pct('headings')} | {pct('items')} | {pct('code')} | {pct('words')} | "
            f"{1000 * statistics.median(seconds):.1f} | {sum(seconds):.2f} | {failures} |"
        )
    ref_sums = rows[0][1]
    print(
        f"\ntruth: {ref_sums['headings_ref']} headings, {ref_sums['items_ref']} list items, "
        f"{ref_sums['code_ref']} code lines, {ref_sums['words_ref']} words"
    )

    print("\nHostile page (<br> x N then </i> x N), seconds:\n")
    names = list(converters())
    print("| N | bytes | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    skipped: set[str] = set()
    for n in args.hostile:
        page = ("<p>" + "<br>" * n + "</i>" * n + "</p>").encode()
        cells = []
        for name, convert in converters().items():
            if name in skipped:
                cells.append("skipped")
                continue
            start = time.perf_counter()
            convert(page, "http://127.0.0.1/")
            took = time.perf_counter() - start
            cells.append(f"{took:.2f}")
            if took * 16 > args.hostile_limit:  # quadratic: 4x the size would take 16x
                skipped.add(name)
        print(f"| {n} | {len(page) // 1000} KB | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
