"""The library entry point: `build(options)` runs a build and writes its outputs."""

from __future__ import annotations

from ocibuild.builder.events import Reporter
from ocibuild.builder.executor import Build, BuildResult
from ocibuild.builder.export import export, metadata, write_metadata
from ocibuild.builder.options import BuildOptions, OutputSpec


def build(options: BuildOptions, reporter: Reporter | None = None) -> BuildResult:
    """Build ``options.context`` for every platform and write every output.

    Returns the result (index or manifest descriptor, per-platform manifests). Raises an
    ``ocibuild.errors.OcibuildError``; Dockerfile errors carry their file and line.
    """
    with Build(options, reporter) as run:
        result = run.run()
        outputs = options.outputs + ([OutputSpec("registry")] if options.push else [])
        result.warnings.extend(export(result, outputs, options.tags, run.images, options.registry, run.archive))
    for warning in result.warnings:
        run.steps.reporter.warn(warning)
    if options.metadata_file:
        write_metadata(options.metadata_file, metadata(result, options.tags))
    return result
