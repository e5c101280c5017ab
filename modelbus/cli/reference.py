"""The README's CLI reference, generated from the commands' own --help."""
from __future__ import annotations

import re
from pathlib import Path

import click

START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
WIDTH = 100


def _walk(command: click.Command, ctx: click.Context):
    yield command, ctx
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            sub = command.commands[name]
            yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx, terminal_width=WIDTH, max_content_width=WIDTH))


def reference(main: click.Group) -> str:
    """Markdown: one heading and the --help text per command, groups included."""
    # The group's context_settings (its -h alias) as `modelbus` itself applies them; click
    # caches each command's help option, so building contexts without them is order-dependent.
    settings = {**main.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    root = click.Context(main, info_name="modelbus", **settings)
    parts = []
    for command, ctx in _walk(main, root):
        path = ctx.command_path
        parts.append(f"#### `{path}`\n\n```text\n{command.get_help(ctx).rstrip()}\n```\n")
    return "\n".join(parts)


def update_readme(readme: Path, main: click.Group) -> bool:
    """Rewrite the marked CLI section of the README; True when it changed."""
    text = readme.read_text()
    new = re.sub(
        re.escape(START) + r".*?" + re.escape(END),
        lambda _: f"{START}\n{reference(main)}{END}",
        text,
        flags=re.S,
    )
    if new != text:
        readme.write_text(new)
    return new != text


def readme_section(readme: Path) -> str:
    """The CLI reference as the README has it now."""
    text = readme.read_text()
    return text[text.index(START) + len(START) + 1 : text.index(END)]
