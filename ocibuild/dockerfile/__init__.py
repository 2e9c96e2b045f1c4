"""The Dockerfile frontend: text -> typed instructions -> stages, pure (no I/O but ignore files).

Pipeline (modelled on BuildKit's frontend/dockerfile)::

    parser.py              BuildKit's parser (the ``dockerfile`` package) -> Node, errors with lines
    parse_instructions.py  Node -> one typed instruction (instructions.py), flags in flags.py
    stages.py              instructions -> Dockerfile(global ARGs, stages)     parse()
    shell.py               word expansion and quote removal (BuildKit's shell/lex.go)
    scope.py               GlobalScope / StageScope: BuildKit's ARG and ENV rules
    expand.py              expand(instr, scope), step(instr, scope)
    graph.py               target resolution, stage dependencies, needed stages in build order
    check.py               check(): parse + graph + expansion, as a builder would walk it
    ignore.py              .dockerignore matching (moby/patternmatcher)

Typical use by a builder::

    df = parse(text)
    gscope = df.global_scope(build_args, platform_args("linux/arm64"))
    for stage in needed_stages(df, target, gscope):
        frm = expand(stage.from_instr, gscope)          # image and --platform expanded
        scope = gscope.stage(base_env=image_config_env) # or parent=<scope of the base stage>
        for instr in stage.instructions:
            instr = step(instr, scope)                  # expanded; ENV/ARG applied to scope
            ...                                         # scope.run_env(), scope.run_args()
"""

from ocibuild.dockerfile.check import check
from ocibuild.dockerfile.expand import expand, expand_from, parse_port_specs, step
from ocibuild.dockerfile.graph import Dependency, needed_stages, resolve_target, stage_dependencies
from ocibuild.dockerfile.ignore import Matcher, load_ignore, match_component, parse_ignore
from ocibuild.dockerfile.instructions import (
    AddInstr, ArgInstr, ArgPair, CmdInstr, CopyInstr, EntrypointInstr, EnvInstr, ExposeInstr,
    FromInstr, HealthcheckInstr, HeredocDoc, Instruction, KeyValue, LabelInstr, MaintainerInstr,
    OnbuildInstr, RunInstr, ShellInstr, StopSignalInstr, UserInstr, VolumeInstr, WorkdirInstr,
)
from ocibuild.dockerfile.mounts import mount_fields, mount_from
from ocibuild.dockerfile.parser import Directives, parse_directives
from ocibuild.dockerfile.scope import PLATFORM_ARGS, GlobalScope, StageScope, platform_args
from ocibuild.dockerfile.shell import Lexer, process_word, process_words, referenced_names
from ocibuild.dockerfile.stages import Dockerfile, Stage, parse

__all__ = [
    "AddInstr", "ArgInstr", "ArgPair", "CmdInstr", "CopyInstr", "Dependency", "Directives",
    "Dockerfile", "EntrypointInstr", "EnvInstr", "ExposeInstr", "FromInstr", "GlobalScope",
    "HealthcheckInstr", "HeredocDoc", "Instruction", "KeyValue", "LabelInstr", "Lexer",
    "MaintainerInstr", "Matcher", "OnbuildInstr", "PLATFORM_ARGS", "RunInstr", "ShellInstr",
    "Stage", "StageScope", "StopSignalInstr", "UserInstr", "VolumeInstr", "WorkdirInstr",
    "check", "expand", "expand_from", "load_ignore", "match_component", "mount_fields", "mount_from",
    "needed_stages", "parse", "parse_directives", "parse_ignore", "parse_port_specs",
    "platform_args", "process_word",
    "process_words", "referenced_names", "resolve_target", "stage_dependencies", "step",
]
