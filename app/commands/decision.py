"""`echo-iad decision ...`: build the offline model, preview a prompt, ask one question."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.commands import existing

app = typer.Typer(help="Decision stage utilities (offline model build, prompt preview).", no_args_is_help=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML settings file (default: $ECHO_IAD_CONFIG or built-in defaults).")
]
QuestionOpt = Annotated[str, typer.Option(help="The question, e.g. 'Is there any defect in the object?'.")]
OptionOpt = Annotated[
    list[str] | None, typer.Option("--option", help="A lettered option as LETTER=TEXT; repeat (default: A=Yes. B=No.).")
]
FormatOpt = Annotated[str, typer.Option("--format", help="Answer format: multiple_choice, open_qa or true_false.")]
TypeOpt = Annotated[
    str,
    typer.Option(
        "--type",
        help="MMAD question type, e.g. 'Defect Classification' (the product is never named for Object "
        "Classification, nor when the type is unknown).",
    ),
]


def _question_type(name: str) -> str:
    from services.mmad.types import canonical_type

    if not name:
        return ""
    qtype = canonical_type(name)
    if qtype is None:
        raise typer.BadParameter(f"{name!r} is not an MMAD question type", param_hint="--type")
    return qtype


def _options(raw: list[str] | None) -> dict[str, str]:
    if not raw:
        return {"A": "Yes.", "B": "No."}
    out = {}
    for item in raw:
        letter, sep, text = item.partition("=")
        if not sep or not text:
            raise typer.BadParameter(f"{item!r}: write an option as LETTER=TEXT, e.g. A=Yes.", param_hint="--option")
        out[letter.strip()] = text.strip()
    return out


@app.command("build-offline-model")
def build_offline_model_cmd(
    out: Annotated[
        Path | None, typer.Option(help="Folder to build into (default: <decision.model_cache>/echo-tiny-qwen2-vl).")
    ] = None,
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when the folder already holds a model.")] = False,
) -> None:
    """Build the random-weight Qwen2-VL test model (real tokenizer and processor) and save it like real weights."""
    import shutil

    from services.config import load_settings
    from services.decision.offline_model import OFFLINE_MODEL, build_offline_model, is_built

    s = load_settings(config).decision
    folder = out or Path(s.model_cache) / OFFLINE_MODEL
    if is_built(folder) and not force:
        typer.echo(f"{folder}: already built (use --force to rebuild)")
        return
    if force and folder.exists():
        shutil.rmtree(folder)
    build_offline_model(folder, seed=s.seed, min_pixels=s.min_pixels, max_pixels=s.max_pixels)
    typer.echo(f"{folder}: built (serve it with `transformers serve {folder}`)")


@app.command()
def preview(
    question: QuestionOpt = "Is there any defect in the object?",
    option: OptionOpt = None,
    references: Annotated[int, typer.Option(help="Number of normal reference images in the prompt.")] = 1,
    knowledge: Annotated[str, typer.Option(help="Knowledge Guide text to include.")] = "",
    category: Annotated[str, typer.Option(help="Product category, for the wording.")] = "",
    answer_format: FormatOpt = "multiple_choice",
    reasoning: Annotated[bool, typer.Option(help="Show the Reasoning Expert's first pass too.")] = False,
    question_type: TypeOpt = "",
    style: Annotated[
        str, typer.Option(help="Prompt style: mmad (the official MMAD prompt, the default) or echo (named sections).")
    ] = "mmad",
) -> None:
    """Print the chat messages the decision stage sends (images as placeholders); loads no model."""
    from PIL import Image

    from services.decision.prompt import PromptInput, final_prompts, prompt_text, reasoning_prompt

    if answer_format not in ("multiple_choice", "open_qa", "true_false"):
        raise typer.BadParameter(f"{answer_format!r}", param_hint="--format")
    if style not in ("mmad", "echo"):
        raise typer.BadParameter(f"{style!r}: mmad or echo", param_hint="--style")
    pin = PromptInput(
        question,
        _options(option),
        knowledge,
        references,
        category,
        answer_format,  # type: ignore[arg-type]
        reasoning,
        _question_type(question_type),
        style,  # type: ignore[arg-type]
    )
    img = Image.new("RGB", (224, 224))
    first = reasoning_prompt(pin, img, [img] * references, 128) if reasoning else None
    if first is not None:
        typer.echo("# pass 1: Reasoning Expert\n" + prompt_text(first))
    reasoning_text = "<the Reasoning Expert's reply>" if reasoning else None
    for i, p in enumerate(final_prompts(pin, img, [img] * references, reasoning=reasoning_text, first_pass=first)):
        typer.echo(f"# final pass {i + 1} (choices: {', '.join(p.choices) or 'free text'})\n" + prompt_text(p))


@app.command()
def ask(
    image: Annotated[Path, typer.Option(help="The query image.", callback=existing, dir_okay=False)],
    question: QuestionOpt = "Is there any defect in the object?",
    option: OptionOpt = None,
    reference: Annotated[
        list[Path] | None, typer.Option(help="A normal reference image; repeat for k-shot.", callback=existing)
    ] = None,
    knowledge: Annotated[str, typer.Option(help="Knowledge Guide text to include.")] = "",
    category: Annotated[str, typer.Option(help="Product category, for the wording.")] = "",
    answer_format: FormatOpt = "multiple_choice",
    reasoning: Annotated[bool, typer.Option(help="Run the Reasoning Expert pass first.")] = False,
    show_prompt: Annotated[bool, typer.Option(help="Include the exact prompt in the output.")] = False,
    question_type: TypeOpt = "",
    config: ConfigOpt = None,
) -> None:
    """Ask the configured decision backend one question about one image; print the result as JSON."""
    import asyncio
    import dataclasses

    from services.config import load_settings
    from services.decision.core import DecisionInput
    from services.decision.server import build_decider

    s = load_settings(config).decision
    inp = DecisionInput(
        query_image=image.read_bytes(),
        question=question,
        options=_options(option),
        reference_images=[p.read_bytes() for p in reference or []],
        knowledge=knowledge,
        reasoning=reasoning,
        answer_format=answer_format,  # type: ignore[arg-type]
        return_prompt=show_prompt,
        category=category,
        question_type=_question_type(question_type),
    )

    async def run() -> dict:
        decider = build_decider(s)
        try:
            return dataclasses.asdict(await decider.decide(inp))
        finally:
            await decider.close()

    typer.echo(json.dumps(asyncio.run(run()), ensure_ascii=False, indent=1))
