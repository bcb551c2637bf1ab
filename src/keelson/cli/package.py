"""``keelson package``: write a deployment bundle for one model version, or verify one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keelson.cli.common import console, find_project, friendly, open_project_store
from keelson.errors import KeelsonError


@friendly
def package(
    ref: str = typer.Argument(
        ...,
        metavar="NAME@ALIAS",
        help="The model version to package, e.g. bank-marketing@production "
        "(with --verify: the bundle folder to check).",
    ),
    out: Path | None = typer.Argument(
        None, metavar="OUT", help="A new (or empty) folder to write the bundle into."
    ),
    project: Path = typer.Option(Path(), "--project", "-p", help="Project folder."),
    image: str | None = typer.Option(
        None, help="Container image the Kubernetes manifests run; default NAME:VERSION."
    ),
    with_keys: bool = typer.Option(
        False,
        "--with-keys",
        help="Copy the project's live API keys (hashes only): the server needs them beyond "
        "loopback.",
    ),
    verify: bool = typer.Option(
        False, "--verify", help="Check an existing bundle's files against its MANIFEST.json."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """A folder that serves one model version anywhere: store, lock, Dockerfile, Kubernetes."""
    if verify:
        if out is not None:
            raise KeelsonError("--verify takes one folder: `keelson package --verify OUT`.")
        _verify(Path(ref))
        return
    if out is None:
        raise KeelsonError(
            "missing OUT: `keelson package NAME@ALIAS OUT` writes the bundle into OUT."
        )
    _package(ref, out, project, quiet, image=image, with_keys=with_keys)


def _package(ref: str, out: Path, project: Path, quiet: bool, **options: Any) -> None:
    from keelson.deploy.bundle import build_bundle, manifest_digest
    from keelson.spec import load_spec

    folder = find_project(project)
    options["serve"] = load_spec(folder).serve
    store = open_project_store(folder)
    try:
        if quiet:
            document = build_bundle(store, ref, out, **options)
        else:
            with console.status("packaging") as status:
                document = build_bundle(store, ref, out, on_step=status.update, **options)
    finally:
        store.close()
    model, serve = document["model"], document["serve"]
    console.print(
        f"packaged {model['name']} version {model['version']} ({serve['reference']}) into "
        f"{out}: {len(document['files'])} files, model SHA-256 {document['artifact']['sha256']}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"MANIFEST.json SHA-256 {manifest_digest(out)}", highlight=False, soft_wrap=True)
    if not document["serve"]["api_keys"]:
        console.print(
            "[yellow]note:[/] no API keys in the bundle: beyond loopback the server answers "
            "401 until you package again with --with-keys (see README.md).",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"next: docker build -t {serve['image']} {out}   (see {out / 'README.md'})",
        highlight=False,
        soft_wrap=True,
    )


def _verify(folder: Path) -> None:
    from keelson.deploy.bundle import read_manifest, verify_bundle

    problems = verify_bundle(folder)
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/] {problem}", highlight=False, soft_wrap=True)
        raise KeelsonError(f"{len(problems)} problem(s) in the bundle {folder}: do not deploy it.")
    files = read_manifest(folder)["files"]
    console.print(
        f"[green]✓[/] {folder}: all {len(files)} files match MANIFEST.json.",
        highlight=False,
        soft_wrap=True,
    )
