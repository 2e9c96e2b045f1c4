"""`ocibuild build`: flags as `docker buildx build` spells them."""

from __future__ import annotations

import os

from ocibuild.cache.spec import CacheSpec
from ocibuild.builder import BuildOptions, ContextSpec, OutputSpec, build, parse_key_values
from ocibuild.cli.common import add_debug, add_registry_flags, registry_access
from ocibuild.cli.progress import make_reporter
from ocibuild.errors import InvalidOption
from ocibuild.builder.mounts import SecretSpec
from ocibuild.builder.options import COMPRESSIONS
from ocibuild.oci import parse_platforms


def add_parser(sub) -> None:
    p = sub.add_parser("build", help="build an image from a Dockerfile",
                       description="Build an image from a Dockerfile (flags follow `docker buildx build`).")
    p.add_argument("context", metavar="PATH", help="build context directory")
    p.add_argument("-f", "--file", dest="dockerfile", help="Dockerfile (default: PATH/Dockerfile)")
    p.add_argument("-t", "--tag", action="append", default=[], help="name:tag of the image (repeatable)")
    p.add_argument("--platform", action="append", default=[], help="target platforms, e.g. linux/amd64,linux/arm64")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="image label")
    p.add_argument("--target", help="stage to build")
    p.add_argument("--build-context", action="append", default=[], metavar="NAME=VALUE",
                   help="extra context: a directory or oci-layout://path[:tag|@digest]")
    p.add_argument("-o", "--output", action="append", default=[], metavar="SPEC",
                   help="type=oci|docker|local|tar,dest=PATH[,tar=false] (default: the local image store)")
    p.add_argument("--push", action="store_true", help="push the -t names (shorthand for -o type=registry)")
    add_registry_flags(p)
    p.add_argument("--metadata-file", help="write build result metadata (JSON) to this file")
    p.add_argument("--iidfile", help="write the image digest to this file")
    p.add_argument("--progress", default="auto", choices=["auto", "plain", "tty", "quiet"])
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image digest")
    p.add_argument("--compression", default="gzip", choices=sorted(COMPRESSIONS))
    p.add_argument("--compression-level", type=int)
    p.add_argument("--source-date-epoch", type=int, help="timestamp for reproducible output "
                   "(default: $SOURCE_DATE_EPOCH)")
    p.add_argument("--secret", action="append", default=[], metavar="id=NAME[,src=FILE|,env=VAR]",
                   help="a secret for RUN --mount=type=secret (repeatable)")
    p.add_argument("--sandbox", default="auto", choices=["auto", "root", "userns", "proot"],
                   help="how RUN steps run (default: the best this machine allows)")
    p.add_argument("--network", default="default", choices=["default", "none", "host"],
                   help="network for RUN steps (RUN --network overrides it)")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache (results are still recorded)")
    p.add_argument("--no-cache-filter", action="append", default=[], metavar="STAGE",
                   help="do not use the build cache for these stages (comma-separated, repeatable)")
    p.add_argument("--cache-to", action="append", default=[], metavar="SPEC",
                   help="export the build cache: type=registry,ref=..|type=local,dest=..|type=inline[,mode=min|max]")
    p.add_argument("--cache-from", action="append", default=[], metavar="SPEC",
                   help="import a build cache: type=registry,ref=..|type=local,src=..|a registry ref")
    p.add_argument("-j", "--jobs", type=int, default=0,
                   help="stages and platforms built at once (default: the number of CPUs)")
    p.add_argument("--pull", action="store_true", help="accepted for buildx compatibility")
    p.add_argument("--cache-dir", help="ocibuild's cache and image store (default: $OCIBUILD_CACHE_DIR "
                   "or ~/.cache/ocibuild)")
    add_debug(p)


def options(args) -> BuildOptions:
    platforms = parse_platforms(",".join(args.platform)) if args.platform else []
    epoch = args.source_date_epoch
    if epoch is None and os.environ.get("SOURCE_DATE_EPOCH"):
        try:
            epoch = int(os.environ["SOURCE_DATE_EPOCH"])
        except ValueError:
            raise InvalidOption(f"invalid SOURCE_DATE_EPOCH {os.environ['SOURCE_DATE_EPOCH']!r}") from None
    return BuildOptions(
        context=args.context,
        dockerfile=args.dockerfile,
        platforms=platforms,
        tags=args.tag,
        build_args=parse_key_values(args.build_arg, "--build-arg"),
        labels=parse_key_values(args.label, "--label"),
        target=args.target,
        build_contexts=[ContextSpec.parse(c) for c in args.build_context],
        outputs=[OutputSpec.parse(o) for o in args.output],
        compression=COMPRESSIONS[args.compression],
        compression_level=args.compression_level,
        source_date_epoch=epoch,
        cache_dir=args.cache_dir,
        metadata_file=args.metadata_file,
        push=args.push,
        registry=registry_access(args),
        secrets={s.id: s for s in map(SecretSpec.parse, args.secret)},
        sandbox=args.sandbox,
        network=args.network,
        no_cache=args.no_cache,
        no_cache_filter=[n for item in args.no_cache_filter for n in item.split(",") if n],
        cache_to=[CacheSpec.parse(c, export=True) for c in args.cache_to],
        cache_from=[CacheSpec.parse(c, export=False) for c in args.cache_from],
        jobs=args.jobs or os.cpu_count() or 1,
    )


def run(args) -> int:
    opts = options(args)
    reporter = make_reporter("quiet" if args.quiet else args.progress)
    result = build(opts, reporter=reporter)
    if args.iidfile:
        with open(args.iidfile, "w") as f:
            f.write(str(result.digest))
    for name in result.pushed:
        reporter.info(f"pushed {name}")
    if args.quiet:
        print(result.digest)
    return 0


