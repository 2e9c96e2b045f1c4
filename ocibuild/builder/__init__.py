"""Build orchestration: Dockerfile stages x platforms -> layers, configs, manifests -> outputs."""

from ocibuild.builder.api import build
from ocibuild.builder.executor import BuildResult
from ocibuild.builder.options import BuildOptions, ContextSpec, OutputSpec, parse_key_values

__all__ = ["build", "BuildResult", "BuildOptions", "ContextSpec", "OutputSpec", "parse_key_values"]
