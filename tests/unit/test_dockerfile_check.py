"""check(): the whole frontend on valid input, and the names the builder relies on."""

import ocibuild.dockerfile as frontend
from ocibuild.dockerfile import GlobalScope, StageScope, check, expand_from, needed_stages, platform_args

VALID = """\
# syntax=docker/dockerfile:1
ARG GO=1.22
ARG ALPINE=3.19
FROM --platform=$BUILDPLATFORM golang:${GO} AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.* ./
RUN --mount=type=cache,target=/root/.cache/go-build GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app
FROM alpine:${ALPINE} AS broken-but-unused
COPY --from=nowhere-later /x /x
FROM alpine:${ALPINE}
LABEL org.opencontainers.image.title="app" version=$GO
ENV APP_HOME=/app PATH=/app/bin:$PATH
COPY --from=build --chown=65532:65532 /out/app ${APP_HOME}/bin/
COPY <<-EOF /etc/app.conf
\thome=$APP_HOME
\tEOF
USER 65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["/app/bin/app", "health"]
ENTRYPOINT ["/app/bin/app"]
"""


def test_valid_dockerfile_passes():
    df = check(VALID, platform="linux/arm64")
    assert [s.display_name for s in df.stages] == ["build", "broken-but-unused", "stage-2"]
    assert df.syntax == "docker/dockerfile:1"


def test_builder_facing_names():
    df = frontend.parse(VALID)
    scope = GlobalScope(df, {"GO": "1.23"}, platform_args("linux/arm64", "linux/amd64"))
    stages = needed_stages(df, None, scope)
    assert [s.index for s in stages] == [0, 2]
    assert expand_from(stages[0], scope) == ("golang:1.23", "linux/amd64")
    assert stages[0].from_instr.original.startswith("FROM --platform")
    stage_scope = StageScope(scope, ["PATH=/usr/bin"])
    for instr in stages[1].instructions:
        frontend.step(instr, stage_scope)
    assert stage_scope.config_env() == ["PATH=/app/bin:/usr/bin", "APP_HOME=/app"]
    assert scope.unused_build_args() == []


def test_crlf_and_comments():
    df = check("FROM alpine\r\n# comment\r\nRUN echo hi \\\r\n  there\r\n")
    assert df.stages[0].instructions[0].command == ("echo hi   there",)
