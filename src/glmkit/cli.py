"""The ``glmkit`` command.

``glmkit fit|validate|test|predict --config recipe.yaml`` runs a recipe through
:class:`GlmkitCLI` (a LightningCLI); ``--print_config`` prints the whole run. Commands that need
no model are handled here before Lightning sees ``sys.argv`` (the DDP launcher re-executes
``sys.argv``, so it must stay intact for training):

- ``glmkit list [KIND] [PATTERN]``: registered components (plugins included);
- ``glmkit plugins``: which plugins loaded and which failed;
- ``glmkit eval ...``: benchmark harness (``glmkit.eval.cli``);
- ``glmkit eval-retrieval ...``: zero-shot retrieval / classification of exported stage-2 towers;
- ``glmkit tools serve|export-skills ...``: MCP server and skill export (``glmkit.agent``).
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

from glmkit.config import ConfigError, prepare_recipe
from glmkit.registry import (
    DISABLE_AUTOLOAD_ENV,
    ImportReport,
    all_registries,
    autoload_disabled,
    import_all,
    installed_plugins,
    load_plugins,
)


class GlmkitCLI(LightningCLI):
    """LightningCLI with glmkit's defaults.

    Any imported ``LightningModule`` / ``LightningDataModule`` may be named in a recipe
    (subclass mode); optimizers are built by each stage from its own parameter routing, so the
    top-level ``--optimizer`` groups are off; re-running in the same directory may overwrite the
    saved ``config.yaml``.

    A run's outputs live under ``trainer.default_root_dir``: relative output paths of the logger
    (``save_dir``) and of the callbacks (``dirpath``, ``path``, ``save_dir``) are taken under it, so
    ``--trainer.default_root_dir=elsewhere`` moves every output. A path a recipe writes out under its
    own root (``runs/x/checkpoints`` beside ``default_root_dir: runs/x``) moves with the root too.
    The paths are resolved before parsing, so ``--print_config`` shows where the run writes.
    """

    #: The ``init_args`` keys of loggers and callbacks that name output paths.
    OUTPUT_PATH_KEYS = ("dirpath", "path", "save_dir")

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("model_class", LightningModule)
        kwargs.setdefault("datamodule_class", LightningDataModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Resolve names and expand presets in every ``--config`` recipe, then parse as usual.

        The recipe the parser sees (and ``--print_config`` prints) has full import paths and
        every preset's values; a name that resolves nowhere stops here with the closest names.
        """
        if isinstance(args, dict | Namespace):
            super().parse_arguments(parser, args)
            return
        try:
            argv = prepare_config_args(list(sys.argv[1:] if args is None else args))
        except ConfigError as exc:
            print(f"glmkit: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        self.config = parser.parse_args(self.outputs_under_root(argv))

    @classmethod
    def outputs_under_root(cls, argv: list[str]) -> list[str]:
        """``argv`` with the recipes' relative output paths placed under the run's root directory.

        The root is the last ``trainer.default_root_dir`` set, by a ``--config`` recipe or by
        ``--trainer.default_root_dir``, in command-line order; without one, nothing changes.
        """
        root: str | None = None
        recipes: dict[int, dict[str, Any]] = {}
        for i, arg in enumerate(argv):
            if arg == "--config" and i + 1 < len(argv):
                try:
                    recipe = yaml.safe_load(argv[i + 1])
                except yaml.YAMLError:
                    continue
                trainer = recipe.get("trainer") if isinstance(recipe, dict) else None
                if isinstance(trainer, dict):
                    recipes[i + 1] = recipe
                    if trainer.get("default_root_dir"):
                        root = str(trainer["default_root_dir"])
            elif arg == "--trainer.default_root_dir" and i + 1 < len(argv):
                root = argv[i + 1]
            elif arg.startswith("--trainer.default_root_dir="):
                root = arg.split("=", 1)[1]
        if root is None:
            return argv
        out = list(argv)
        for index, recipe in recipes.items():
            trainer = recipe["trainer"]
            own = trainer.get("default_root_dir")
            for spec in cls._output_specs(trainer):
                args = spec.get("init_args")
                for key in cls.OUTPUT_PATH_KEYS:
                    if isinstance(args, dict) and isinstance(args.get(key), str):
                        args[key] = cls._under_root(args[key], root, own)
            out[index] = yaml.safe_dump(recipe, sort_keys=False)
        return out

    @staticmethod
    def _under_root(path: str, root: str, recipe_root: str | None) -> str:
        """``path`` under ``root`` when it is relative (after its recipe's own root, if it starts with it)."""
        if Path(path).is_absolute():
            return path
        relative = Path(path)
        if recipe_root:
            with contextlib.suppress(ValueError):  # not under the recipe's root: taken as it is
                relative = relative.relative_to(recipe_root)
        return str(Path(root) / relative) if str(relative) != "." else str(Path(root))

    @staticmethod
    def _output_specs(trainer: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``class_path``/``init_args`` specs of the trainer's logger(s) and callbacks."""
        specs: list[Any] = []
        for key in ("logger", "callbacks"):
            value = trainer.get(key)
            specs += value if isinstance(value, list) else [value]
        return [spec for spec in specs if isinstance(spec, dict)]


def prepare_config_args(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config FILE`` replaced by the prepared recipe (see :func:`prepare`)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        value: str | None = None
        if arg == "--config" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        out += ["--config", _prepared_recipe(value)]
    return out


def _prepared_recipe(value: str) -> str:
    path = Path(value)
    if not path.is_file():
        return value  # an inline YAML string, or a missing file that the parser reports
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(recipe, dict):
        return value
    try:
        prepared = prepare_recipe(recipe)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return yaml.safe_dump(prepared, sort_keys=False)


def _print_report(report: ImportReport, stream: object = sys.stderr) -> None:
    for name, error in report.failed.items():
        print(f"glmkit: could not import {name}: {error}", file=stream)  # type: ignore[arg-type]


def list_components(kind: str | None = None, pattern: str = "*") -> str:
    """The text of ``glmkit list``: registered components by kind, with presets where they exist."""
    registries = all_registries()
    if kind is not None and kind not in registries:
        close = difflib.get_close_matches(kind, list(registries), n=2, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise SystemExit(f"glmkit list: unknown kind {kind!r}.{hint} Kinds: {', '.join(registries)}")
    lines: list[str] = []
    for name, reg in registries.items():
        if kind is not None and name != kind:
            continue
        entries = [(n, obj) for n, obj in reg.items() if fnmatch.fnmatch(n, pattern)]
        if not entries:
            continue
        header = f"{name}" + (f"  ({reg.description})" if reg.description else "")
        lines.append(header)
        width = max(len(n) for n, _ in entries)
        for entry_name, obj in entries:
            target = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
            presets = getattr(obj, "PRESETS", None)
            suffix = f"  presets: {', '.join(presets)}" if isinstance(presets, dict) and presets else ""
            lines.append(f"  {entry_name:<{width}}  {target}{suffix}")
    return "\n".join(lines) if lines else f"no components match kind={kind or '*'} pattern={pattern!r}"


def _cmd_list(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(
            "usage: glmkit list [KIND] [PATTERN]\n\nList registered components, plugins included.\n\n"
            "  KIND     a component kind (encoders, distill_losses, tools, metrics, ...); all kinds if omitted\n"
            "  PATTERN  a shell-style glob over registered names, e.g. 'draw*' or '*_loss' (quote it)"
        )
        return 0
    _print_report(import_all())
    kind = argv[0] if argv else None
    pattern = argv[1] if len(argv) > 1 else "*"
    print(list_components(kind, pattern))
    return 0


def _cmd_plugins(argv: list[str]) -> int:
    """Print each installed plugin and whether it loaded; exit 1 if any failed, else 0."""
    if argv:
        if argv[0] in ("-h", "--help"):
            print(
                "usage: glmkit plugins\n\nImport every installed plugin (entry-point group "
                "'glmkit.plugins') and say which loaded and which failed, with why; exit 1 if any failed."
            )
            return 0
        print(f"glmkit plugins: takes no arguments, got {' '.join(argv)!r}", file=sys.stderr)
        return 2
    if autoload_disabled():
        installed = installed_plugins()
        print(f"plugin autoloading is disabled ({DISABLE_AUTOLOAD_ENV} is set); not loaded:")
        for name in installed:
            print(f"  {name}")
        if not installed:
            print("  (no plugins installed: entry-point group 'glmkit.plugins')")
        return 0
    report = load_plugins()
    for name in report.loaded:
        print(f"loaded  {name}")
    for name, error in report.failed.items():
        print(f"FAILED  {name}: {error}")
    if not report.loaded and not report.failed:
        print("no plugins installed (entry-point group 'glmkit.plugins')")
    return 1 if report.failed else 0


def _cmd_eval(argv: list[str]) -> int:
    from glmkit.eval.cli import main as eval_main

    _print_report(load_plugins())  # plugins may register benchmarks, metrics and adapters

    return eval_main(argv)


def _retrieval_parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="glmkit eval-retrieval",
        description="Zero-shot image-text retrieval R@K both ways (and zero-shot classification) of "
        "an exported pair of stage-2 towers, computed by the contrastive stage's own validation.",
    )
    parser.add_argument(
        "--image-tower", required=True, help="directory written by ImageTower.save_pretrained"
    )
    parser.add_argument(
        "--text-tower", required=True, help="directory written by HFTextTower.save_pretrained"
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--config",
        help="the stage-2 recipe: its data section's validation pairs (val_sources, val_naflex, "
        "val_seq_len) and its model's class_names, class_templates and retrieval_ks",
    )
    data.add_argument(
        "--data",
        help="a JSONL manifest of image-caption pairs (image and caption fields): every line is "
        "evaluated once, in order; a line whose image or caption cannot be read is skipped and named",
    )
    parser.add_argument(
        "--samples",
        type=int,
        help="--config: pairs drawn, seeded and with replacement as validation draws them "
        "(default: the recipe's val_samples)",
    )
    parser.add_argument("--limit", type=int, help="--data: evaluate only the first N lines")
    parser.add_argument("--batch-size", type=int, default=16, help="--data: pairs per batch (default: 16)")
    parser.add_argument("--caption-key", default="caption", help="caption field of --data (default: caption)")
    parser.add_argument("--languages", nargs="+", help="caption languages to draw from ({language: caption})")
    parser.add_argument("--max-num-patches", type=int, default=256, help="NaFlex patch budget of --data")
    parser.add_argument(
        "--class-names",
        nargs="+",
        help="zero-shot classes; with --data each line's --label-key field is its class's index here",
    )
    parser.add_argument(
        "--label-key", help="--data with --class-names: the class-index field of each line (default: label)"
    )
    parser.add_argument("--class-templates", nargs="+", help="prompt templates, {} is the class name")
    parser.add_argument("--ks", type=int, nargs="+", help="R@K cut-offs (default: the recipe's, or 1 5)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (default: auto)")
    parser.add_argument(
        "--loss", help="the pair's exported loss (its trained temperature and bias): also report the loss"
    )
    parser.add_argument("--out", help="also write the metrics to this JSON file")
    return parser


def _cmd_eval_retrieval(argv: list[str]) -> int:
    import json

    from glmkit.config import instantiate
    from glmkit.stages.contrastive import evaluate_towers

    parser = _retrieval_parser()
    args = parser.parse_args(argv)
    if args.data and args.samples:
        parser.error(
            "--samples draws a recipe's validation pairs (--config); --data reads every line once, "
            "use --limit N"
        )
    if args.config and args.limit:
        parser.error("--limit cuts a --data manifest; with --config give --samples N")
    if args.label_key and not (args.data and args.class_names):
        parser.error("--label-key names the class field of a --data manifest scored with --class-names")
    _print_report(import_all())
    model: dict[str, Any] = {}
    pairs = None
    try:
        if args.config:
            recipe = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
            data_spec = dict(recipe.get("data") or {})
            if "class_path" not in data_spec:
                raise ConfigError(f"{args.config}: no data section with a class_path to read the pairs from")
            init = dict(data_spec.get("init_args") or {})
            if args.samples:
                init["val_samples"] = args.samples
            if not init.get("val_samples"):
                raise ConfigError(f"{args.config}: data.init_args.val_samples is 0; give --samples N")
            data = instantiate({**data_spec, "init_args": init}, where=f"{args.config}: data")
            model = dict((recipe.get("model") or {}).get("init_args") or {})
        else:
            from torch.utils.data import DataLoader

            pairs = _manifest_pairs(args)
            data = DataLoader(pairs, batch_size=None)  # PairsInOrder yields whole batches
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"glmkit eval-retrieval: {exc}", file=sys.stderr)
        return 2
    metrics = evaluate_towers(
        args.image_tower,
        args.text_tower,
        data,
        caption_key=model.get("caption_key", "caption") if args.config else args.caption_key,
        class_names=args.class_names or model.get("class_names"),
        class_templates=args.class_templates or model.get("class_templates") or ["{}"],
        retrieval_ks=args.ks or model.get("retrieval_ks") or (1, 5),
        accelerator=args.accelerator,
        loss=args.loss,
    )
    if pairs is not None:
        _print_skipped(args.data, pairs.pairs, pairs.skipped)
        if not pairs.pairs:
            print(f"glmkit eval-retrieval: no line of {args.data} could be read", file=sys.stderr)
            return 2
    width = max(len(k) for k in metrics)
    print("\n".join(f"{k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items())))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return 0


def _manifest_pairs(args: Any) -> Any:
    """The ``--data`` manifest's pairs, every line once and in order (:class:`PairsInOrder`), at the
    image tower's patch size and ``--max-num-patches``; a line with several captions in
    ``--languages`` gives one, the same every run."""
    from glmkit.data.captions import CaptionedSource, PickCaption
    from glmkit.data.naflex import NaFlexResize
    from glmkit.data.sources import JsonlManifest
    from glmkit.models.zoo import read_config
    from glmkit.stages.contrastive import PairsInOrder

    encoder = read_config(Path(args.image_tower) / "encoder")["init_args"]
    labels = (args.label_key or "label") if args.class_names else None
    manifest = JsonlManifest(args.data, fields=[args.caption_key, *([labels] if labels else [])])
    if labels:
        _check_labels(manifest, labels, len(args.class_names))
    source = CaptionedSource(manifest, key=args.caption_key, languages=args.languages)
    naflex = NaFlexResize(patch_size=int(encoder["patch_size"]), max_num_patches=args.max_num_patches)
    pick = PickCaption(args.caption_key, args.languages)

    def transform(record: dict[str, Any], rng: Any) -> dict[str, Any]:
        record = pick(record, rng)
        if labels and labels != "label":  # the stage scores zero-shot on a "label" field
            record["label"] = record.pop(labels)
        return record

    return PairsInOrder(source, naflex, transform=transform, batch_size=args.batch_size, limit=args.limit)


def _check_labels(manifest: Any, key: str, classes: int) -> None:
    """Refuse a ``--data`` manifest whose ``key`` field is not a class index below ``classes`` (a line
    without it is skipped and named like an unreadable caption)."""
    for extras, line in zip(manifest.extras, manifest.lines, strict=True):
        value = extras.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < classes
        ):
            raise ValueError(
                f"{manifest.path}:{line}: {key!r} is {value!r}; it must be the index of a class in "
                f"--class-names (0 to {classes - 1})"
            )


def _print_skipped(manifest: str, pairs: int, skipped: list[str]) -> None:
    """Say on stderr how many pairs of ``manifest`` were evaluated and name every skipped line."""
    lines = "line" if len(skipped) == 1 else "lines"
    print(
        f"glmkit eval-retrieval: {pairs} pairs from {manifest}, {len(skipped)} {lines} skipped",
        file=sys.stderr,
    )
    for item in skipped:
        print(f"  skipped {item}", file=sys.stderr)


def _cmd_tools(argv: list[str]) -> int:
    usage = (
        "usage: glmkit tools {serve,export-skills} ...\n\n"
        "  serve          serve the registered tools to MCP clients over stdio\n"
        "  export-skills  write the registered tools as Agent Skills folders\n\n"
        "glmkit tools COMMAND --help gives each command's options."
    )
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    if argv[0] == "serve":  # loads the plugins itself (python -m glmkit.agent.mcp_server too)
        from glmkit.agent.mcp_server import main as serve_main

        return serve_main(argv[1:])
    _print_report(load_plugins())  # plugins may register tools
    if argv[0] == "export-skills":
        from glmkit.agent.skills import main as skills_main

        return skills_main(argv[1:])
    print(f"glmkit tools: unknown command {argv[0]!r}\n{usage}", file=sys.stderr)
    return 2


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "list": _cmd_list,
    "plugins": _cmd_plugins,
    "eval": _cmd_eval,
    "eval-retrieval": _cmd_eval_retrieval,
    "tools": _cmd_tools,
}


COMMANDS_HELP = """\
glmkit: train, evaluate and serve native multimodal agent models.

Commands of glmkit itself:
  list [KIND] [PATTERN]   registered components (encoders, losses, tools, metrics, ...)
  plugins                 installed glmkit plugins and whether they loaded
  eval --benchmark NAME --model SPEC
                          run an evaluation benchmark (glmkit eval --help)
  eval-retrieval --image-tower DIR --text-tower DIR (--config RECIPE | --data MANIFEST [--limit N])
                          zero-shot retrieval of exported stage-2 towers (--help)
  tools serve | export-skills
                          the tool chain over MCP (stdio), or as agent skill folders

Training runs through Lightning's subcommands, fit | validate | test | predict --config RECIPE:
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``glmkit`` console script."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    if not args or args[0] in ("-h", "--help"):
        print(COMMANDS_HELP)  # then LightningCLI's own help of the training subcommands
    # Plugins and glmkit's components must be imported before the parser is built, so that short
    # class names in a recipe resolve.
    _print_report(import_all())
    GlmkitCLI(args=args if argv is not None else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
